//! End to end against a real API server; skipped unless `VMDHCP_E2E_KUBECONFIG` names a
//! kubeconfig.
//!
//! The webhook runs in this process on a loopback port and registers itself by URL
//! (`https://127.0.0.1:<port>`, certificate with the extra SAN `127.0.0.1`), so the API server
//! must run on this machine. The test applies vmdhcp's CRDs (and a minimal
//! NetworkAttachmentDefinition CRD when the cluster has none), works in a fresh namespace, and
//! removes its webhook configurations afterwards. Use a throwaway cluster: our CRDs replace
//! any installed ones.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::{Client, Resource};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vmdhcp_api::consts::{LABEL_IPPOOL_NAME, LABEL_IPPOOL_NAMESPACE};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
use vmdhcp_webhook::admission::Settings;
use vmdhcp_webhook::cache::nad_resource;
use vmdhcp_webhook::certs::Lifetimes;
use vmdhcp_webhook::registration::{self, Registration, Target};
use vmdhcp_webhook::run::{self, Config};
use vmdhcp_webhook::write::Outcome;

const ENV: &str = "VMDHCP_E2E_KUBECONFIG";
const MANAGER: &str = "vmdhcp-webhook-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_against_a_real_api_server() {
    let Ok(kubeconfig) = std::env::var(ENV) else {
        println!("skipping: {ENV} not set");
        return;
    };
    let client = run::client(Some(kubeconfig.into()), None)
        .await
        .expect("a client from the kubeconfig");
    apply_crds(&client).await;

    let suffix = format!("{:x}", jiff::Timestamp::now().as_millisecond() % 0xff_ffff);
    let ns = format!("vmdhcp-e2e-{suffix}");
    let name = format!("vmdhcp-e2e-webhook-{suffix}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("a namespace");

    let stop = CancellationToken::new();
    let outcome = std::panic::AssertUnwindSafe(scenario(&client, &ns, &name, &stop))
        .catch_unwind()
        .await;

    // Cleanup whatever happened: a left-behind `Fail` validator would block every IPPool
    // operation of the cluster once this process is gone.
    stop.cancel();
    let dp = DeleteParams::default();
    let _ = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete(&name, &dp)
        .await;
    let _ = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete(&name, &dp)
        .await;
    if std::env::var("VMDHCP_E2E_KEEP").is_err() {
        let _ = namespaces.delete(&ns, &dp).await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn scenario(client: &Client, ns: &str, name: &str, stop: &CancellationToken) {
    // Two networks: one gets a pool, one stays unmanaged.
    create_nad(client, ns, "net-a", BTreeMap::new()).await;
    create_nad(client, ns, "net-b", BTreeMap::new()).await;

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Config {
        name: name.to_owned(),
        namespace: ns.to_owned(),
        settings: Settings {
            service_cidr: Some("10.53.0.0/16".parse().unwrap()),
        },
        extra_sans: vec!["127.0.0.1".to_owned()],
        target: Target::Url(format!("https://127.0.0.1:{port}")),
        lifetimes: Lifetimes::default(),
        check_interval: Duration::from_secs(2),
    };
    let webhook = tokio::spawn(run::run(client.clone(), config, listener, stop.clone()));
    let steps = Steps {
        client: client.clone(),
        ns: ns.to_owned(),
        name: name.to_owned(),
        port,
        pools: pool_api(client, ns),
        cfgs: Api::namespaced(client.clone(), ns),
    };
    steps.refuses_a_bad_pool().await;
    steps.defaults_a_bare_pool().await;
    steps.refuses_a_second_pool_on_the_network().await;
    steps.protects_a_pool_in_use().await;
    steps.refuses_an_address_outside_the_subnet().await;
    steps.registered_once_with_the_stored_ca().await;
    steps.releases_an_unused_pool().await;
    assert!(!webhook.is_finished(), "the webhook is still serving");
}

struct Steps {
    client: Client,
    ns: String,
    name: String,
    port: u16,
    pools: Api<DynamicObject>,
    cfgs: Api<VirtualMachineNetworkConfig>,
}

impl Steps {
    /// Refused with upstream's message and a 422, once the API server calls us.
    async fn refuses_a_bad_pool(&self) {
        let (ns, name) = (&self.ns, &self.name);
        let bad = pool_object(
            "bad",
            &json!({"networkName": format!("{ns}/net-a"), "ipv4Config": {
                "cidr": "192.168.77.0/24", "serverIP": "192.168.77.2",
                "pool": {"start": "192.168.78.1", "end": "192.168.77.100"}}}),
        );
        let status = wait_for_denial(&self.pools, &bad).await;
        let want = format!(
            "admission webhook \"validator.{ns}.{name}\" denied the request: cannot create IPPool \
             {ns}/bad because start ip 192.168.78.1 is not within subnet"
        );
        assert_eq!(status.message, want);
        assert_eq!(status.code, 422);
        assert_eq!(status.reason, "Invalid");
    }

    /// Keys absent (not empty): the `add` patch creates them.
    async fn defaults_a_bare_pool(&self) {
        let bare = pool_object(
            "net-a",
            &json!({"networkName": "net-a", "ipv4Config": {"cidr": "192.168.77.0/24"}}),
        );
        self.pools
            .create(&PostParams::default(), &bare)
            .await
            .expect("the defaulted pool is admitted");
        let created: IPPool = Api::namespaced(self.client.clone(), &self.ns)
            .get("net-a")
            .await
            .unwrap();
        let cfg = &created.spec.ipv4_config;
        assert_eq!(cfg.server_ip, "192.168.77.1");
        assert_eq!(
            (cfg.pool.start.as_str(), cfg.pool.end.as_str()),
            ("192.168.77.1", "192.168.77.254")
        );
    }

    /// Ours, not upstream's; once the webhook's cache has the first pool.
    async fn refuses_a_second_pool_on_the_network(&self) {
        let ns = &self.ns;
        let twin = pool_object(
            "twin",
            &json!({"networkName": format!("{ns}/net-a"), "ipv4Config": {"cidr": "192.168.77.0/24"}}),
        );
        let dry = dry_run();
        let status =
            denied_within("a second pool on net-a", || self.pools.create(&dry, &twin)).await;
        let want = format!("network {ns}/net-a is already served by IPPool {ns}/net-a");
        assert!(status.message.ends_with(&want), "{}", status.message);
    }

    /// Label the NAD as the controller would, put a VM's NIC on it: the pool cannot go.
    async fn protects_a_pool_in_use(&self) {
        let ns = &self.ns;
        let labels = BTreeMap::from([
            (LABEL_IPPOOL_NAMESPACE.to_owned(), ns.clone()),
            (LABEL_IPPOOL_NAME.to_owned(), "net-a".to_owned()),
        ]);
        label_nad(&self.client, ns, "net-a", &labels).await;
        let vm = vmnetcfg(
            ns,
            "vm-1",
            &json!([{"networkName": "net-a", "macAddress": "52:54:00:e2:e0:01", "ipAddress": "192.168.77.20"},
                    {"networkName": "net-b", "macAddress": "52:54:00:e2:e0:02"}]),
        );
        self.cfgs
            .create(&PostParams::default(), &vm)
            .await
            .expect("a vmnetcfg with a managed and an unmanaged NIC is admitted");
        let dry = dry_delete();
        denied_within("deleting the used pool", || {
            self.pools.delete("net-a", &dry)
        })
        .await;
        let err = self
            .pools
            .delete("net-a", &DeleteParams::default())
            .await
            .expect_err("the pool is in use");
        let kube::Error::Api(status) = &err else {
            panic!("{err}")
        };
        assert_eq!(status.code, 409);
        let want = format!(
            "cannot delete IPPool {ns}/net-a because it's still used by \
             VirtualMachineNetworkConfig(s) {ns}/vm-1, which must be removed at first"
        );
        assert!(status.message.ends_with(&want), "{}", status.message);
    }

    async fn refuses_an_address_outside_the_subnet(&self) {
        let greedy = vmnetcfg(
            &self.ns,
            "vm-2",
            &json!([{"networkName": "net-a", "macAddress": "52:54:00:e2:e0:03", "ipAddress": "10.0.0.9"}]),
        );
        let dry = dry_run();
        let status = denied_within("an address outside the subnet", || {
            self.cfgs.create(&dry, &greedy)
        })
        .await;
        let want = "ip address 10.0.0.9 is not within subnet 192.168.77.0/24";
        assert!(status.message.ends_with(want), "{}", status.message);
    }

    /// The Secrets exist, the caBundle is their CA, and registering again changes nothing:
    /// the defaults we write out match the API server's.
    async fn registered_once_with_the_stored_ca(&self) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let ca = secrets.get(&format!("{}-ca", self.name)).await.unwrap();
        let ca_pem = ca.data.unwrap()["tls.crt"].clone();
        secrets.get(&format!("{}-tls", self.name)).await.unwrap();
        let stored = Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .get(&self.name)
            .await
            .unwrap();
        let hooks = stored.webhooks.unwrap();
        assert_eq!(hooks[0].client_config.ca_bundle, Some(ca_pem.clone()));
        let again = registration::apply(
            &self.client,
            &Registration {
                name: self.name.clone(),
                namespace: self.ns.clone(),
                ca_bundle: ByteString::clone(&ca_pem).0,
                target: Target::Url(format!("https://127.0.0.1:{}", self.port)),
            },
        )
        .await
        .unwrap();
        assert_eq!(again, (Outcome::Kept, Outcome::Kept));
    }

    async fn releases_an_unused_pool(&self) {
        self.cfgs
            .delete("vm-1", &DeleteParams::default())
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.pools.delete("net-a", &dry_delete()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the unused pool stays protected"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.pools
            .delete("net-a", &DeleteParams::default())
            .await
            .expect("an unused pool can be deleted");
    }
}

fn dry_delete() -> DeleteParams {
    DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    }
}

fn pool_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<IPPool>(&()))
}

fn pool_object(name: &str, spec: &serde_json::Value) -> DynamicObject {
    let mut object = DynamicObject::new(name, &ApiResource::erase::<IPPool>(&()));
    object.data = json!({ "spec": spec });
    object
}

fn vmnetcfg(ns: &str, name: &str, nics: &serde_json::Value) -> VirtualMachineNetworkConfig {
    serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"vmName": name, "networkConfigs": nics}
    }))
    .unwrap()
}

/// Creates `bad` until the webhook refuses it: before the API server has loaded the
/// configuration it may be admitted (then it is deleted again) or the call may fail.
async fn wait_for_denial(pools: &Api<DynamicObject>, bad: &DynamicObject) -> kube::core::Status {
    let name = bad.metadata.name.clone().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        match pools.create(&PostParams::default(), bad).await {
            Err(kube::Error::Api(status)) if status.message.contains("denied the request") => {
                return *status;
            }
            Ok(_) => {
                let _ = pools.delete(&name, &DeleteParams::default()).await;
            }
            Err(e) => println!("webhook not answering yet: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook never answered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        field_manager: None,
    }
}

/// Repeats a (dry-run) request until the webhook denies it: it may first be answered from a
/// cache that has not yet seen the objects just written.
async fn denied_within<T, F, Fut>(what: &str, call: F) -> kube::core::Status
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    for _ in 0..30 {
        match call().await {
            Err(kube::Error::Api(status)) if status.message.contains("denied the request") => {
                return *status;
            }
            Err(e) => println!("{what}: not denied yet: {e}"),
            Ok(_) => println!("{what}: not denied yet"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("{what} was never denied")
}

async fn create_nad(client: &Client, ns: &str, name: &str, labels: BTreeMap<String, String>) {
    let mut nad = DynamicObject::new(name, &nad_resource()).within(ns);
    nad.metadata.labels = Some(labels);
    nad.data = json!({"spec": {"config": json!({
        "cniVersion": "0.3.1", "name": name, "type": "bridge", "bridge": "mgmt-br", "ipam": {}
    }).to_string()}});
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &nad_resource())
        .create(&PostParams::default(), &nad)
        .await
        .expect("a NAD");
}

async fn label_nad(client: &Client, ns: &str, name: &str, labels: &BTreeMap<String, String>) {
    let patch = json!({"metadata": {"labels": labels}});
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &nad_resource())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("labels on the NAD");
}

/// vmdhcp's CRDs by server-side apply, and a permissive NAD CRD when Multus is not installed;
/// then waits until all are established.
async fn apply_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    let mut names = Vec::new();
    for crd in vmdhcp_api::crd::crds().unwrap() {
        let name = crd.meta().name.clone().unwrap();
        crds.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .expect("CRD applied");
        names.push(name);
    }
    let nad_crd = "network-attachment-definitions.k8s.cni.cncf.io";
    if crds.get_opt(nad_crd).await.unwrap().is_none() {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": nad_crd},
            "spec": {
                "group": "k8s.cni.cncf.io", "scope": "Namespaced",
                "names": {"plural": "network-attachment-definitions",
                          "singular": "network-attachment-definition",
                          "kind": "NetworkAttachmentDefinition", "shortNames": ["net-attach-def"]},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        }))
        .unwrap();
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("NAD CRD");
    }
    names.push(nad_crd.to_owned());
    for name in names {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let crd = crds.get(&name).await.unwrap();
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} not established"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
