//! End to end against a real API server (`VMDHCP_E2E_KUBECONFIG`, see docs/e2e.md): what a
//! `kubectl` user and the controller see once the webhook is registered.
//!
//! The webhook runs in this process on a loopback port and registers itself by URL
//! (`https://127.0.0.1:<port>`, its self-managed CA, a serving certificate with the extra SAN
//! `127.0.0.1`), so the API server must run on this machine. Its configurations are
//! cluster-wide: they are removed when the scenario ends, panic or not, and a leftover of a
//! killed run is removed before it starts.
//!
//! The scenario, in order:
//! 1. the admission chain of a real server: the mutator, then the CRD's schema and CEL rules,
//!    then the validators; each refusal reaches the client as a 4xx with upstream's text;
//! 2. the mutator's defaults (upstream's examples) and its refusals;
//! 3. the validators on CREATE, UPDATE and DELETE, for IPPools and vmnetcfgs: a NIC's pool
//!    found by network name (the NADs carry no back-labels here), a NIC added by an update
//!    checked as on create, bare network names resolved in the object's namespace, every
//!    zero value upstream accepted accepted (odd lease times with a warning);
//! 4. what `kubectl` prints for those refusals and warnings, compared with docs/webhook.md;
//! 5. the webhook stopped, its configurations still registered: the controller's bookkeeping
//!    (finalizers, status, vmnetcfg spec rewrites) goes through, user input is still refused.
//!
//! Every refusal is printed as the API server returned it (run with `--nocapture`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::Status;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vmdhcp_api::consts::{FINALIZER_IPPOOL, FINALIZER_VMNETCFG};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
use vmdhcp_examples::e2e;
use vmdhcp_webhook::admission::Settings;
use vmdhcp_webhook::cache::Caches;
use vmdhcp_webhook::certs::Lifetimes;
use vmdhcp_webhook::registration::{self, Registration, Target};
use vmdhcp_webhook::run::{self, Config};
use vmdhcp_webhook::secrets;
use vmdhcp_webhook::server::{self, Admission};
use vmdhcp_webhook::tls::{self, CertResolver};
use vmdhcp_webhook::write::Outcome;

/// `--name`: the configurations', and so the webhooks', name. Fixed, so that a run finds and
/// removes what a killed run left behind (e2e tests hold the server one at a time).
const NAME: &str = "vmdhcp-webhook-e2e";
/// How long the API server and the webhook's caches get to catch up.
const WAIT: Duration = Duration::from_secs(60);
const SERVICE_CIDR: &str = "10.53.0.0/16";
/// `<namespace>.<name>` of the webhooks in a Harvester install, as docs/webhook.md writes them.
const HARVESTER_WEBHOOK: &str = "harvester-system.harvester-vm-dhcp-controller-webhook";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_on_a_real_api_server() {
    let Some(cluster) = e2e::cluster().await else {
        return;
    };
    let client = cluster.client.clone();
    e2e::apply_vmdhcp_crds(&client).await;
    e2e::ensure_stub_crd(&client, &e2e::nad_resource()).await;
    delete_configurations(&client).await;

    let admin = client.clone();
    e2e::with_temp_ns(&admin, "vmdhcp-webhook-e2e", |ns| async move {
        let stop = CancellationToken::new();
        let webhook = Arc::new(Mutex::new(None));
        let outcome = AssertUnwindSafe(scenario(
            &client,
            &cluster.kubeconfig,
            &ns,
            &stop,
            webhook.clone(),
        ))
        .catch_unwind()
        .await;
        // A `Fail` validator left registered would refuse every IPPool of the cluster once
        // this process is gone, and finalizers nobody removes would keep the namespace.
        stop.cancel();
        let task = webhook.lock().expect("webhook handle").take();
        if let Some(task) = task
            && let Ok(Err(e)) = task.await
        {
            eprintln!("the webhook stopped with an error: {e}");
        }
        delete_configurations(&client).await;
        release_finalizers(&client, &ns).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
}

type Webhook = Arc<Mutex<Option<JoinHandle<Result<(), vmdhcp_webhook::Error>>>>>;

async fn scenario(
    client: &Client,
    kubeconfig: &Path,
    ns: &str,
    stop: &CancellationToken,
    webhook: Webhook,
) {
    let started = Instant::now();
    for nad in ["net-a", "net-b", "net-c"] {
        create_nad(client, ns, nad).await;
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let config = Config {
        name: NAME.to_owned(),
        namespace: ns.to_owned(),
        settings: Settings {
            service_cidr: Some(SERVICE_CIDR.parse().expect("a CIDR")),
        },
        extra_sans: vec!["127.0.0.1".to_owned()],
        target: Target::Url(format!("https://127.0.0.1:{port}")),
        lifetimes: Lifetimes::default(),
        // No periodic re-registration racing the steps that rewrite the configuration.
        check_interval: Duration::from_secs(3600),
    };
    *webhook.lock().expect("webhook handle") = Some(tokio::spawn(run::run(
        client.clone(),
        config,
        listener,
        stop.clone(),
    )));
    let s = Steps {
        client: client.clone(),
        ns: ns.to_owned(),
        port,
        pools: Api::namespaced_with(client.clone(), ns, &pool_resource()),
        cfgs: Api::namespaced(client.clone(), ns),
        kubeconfig: kubeconfig.to_owned(),
    };
    let mut clock = Clock::new();
    s.mutator_runs_first().await;
    clock.lap("registered; the mutator runs before the schema");
    // The validator is known to answer before the schema is shown to run ahead of it.
    s.validator_runs_last().await;
    s.schema_runs_before_the_validator().await;
    clock.lap("schema and CEL run before the validators");
    s.defaults_as_upstream().await;
    clock.lap("defaults");
    s.refuses_bad_pools().await;
    s.checks_pool_updates().await;
    s.checks_vmnetcfgs().await;
    s.protects_a_pool_in_use().await;
    clock.lap("CREATE, UPDATE and DELETE checks");
    s.updates_checked_as_creates().await;
    s.bare_names_resolve_in_the_objects_namespace().await;
    s.accepts_what_upstream_accepts().await;
    clock.lap("added NICs, bare names, zero values");
    s.kubectl_prints_what_the_docs_show().await;
    clock.lap("kubectl output");
    s.registered_once_with_the_stored_ca().await;
    s.prepare_bookkeeping().await;
    clock.lap("registration kept; deleting objects ready");

    stop.cancel();
    let task = webhook.lock().expect("webhook handle").take();
    if let Some(task) = task {
        task.await
            .expect("the webhook task")
            .expect("the webhook ran and stopped without error");
    }
    s.webhook_is_down().await;
    clock.lap("webhook stopped");
    s.bookkeeping_without_the_webhook().await;
    s.user_input_still_refused().await;
    clock.lap("webhook down: bookkeeping passes, user input refused");
    s.unsynced_webhook_refuses_user_input().await;
    clock.lap("webhook up but not synced: refuses user input");
    println!(
        "webhook e2e scenario: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

struct Clock {
    last: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            last: Instant::now(),
        }
    }

    fn lap(&mut self, what: &str) {
        println!("-- {what}: {:.1} s", self.last.elapsed().as_secs_f64());
        self.last = Instant::now();
    }
}

struct Steps {
    client: Client,
    ns: String,
    port: u16,
    pools: Api<DynamicObject>,
    cfgs: Api<VirtualMachineNetworkConfig>,
    kubeconfig: PathBuf,
}

impl Steps {
    fn validator(&self) -> String {
        format!(
            "admission webhook \"validator.{}.{NAME}\" denied the request",
            self.ns
        )
    }

    fn update_validator(&self) -> String {
        format!(
            "admission webhook \"vmnetcfg-update-validator.{}.{NAME}\" denied the request",
            self.ns
        )
    }

    fn mutator(&self) -> String {
        format!(
            "admission webhook \"mutator.{}.{NAME}\" denied the request",
            self.ns
        )
    }

    fn network(&self, nad: &str) -> String {
        format!("{}/{nad}", self.ns)
    }

    /// Start after end, start outside the subnet, four DNS servers: the mutator speaks first.
    /// Until the API server has loaded the configuration the schema refuses it instead.
    async fn mutator_runs_first(&self) {
        let bad = pool_object(
            "bad-range",
            &json!({"networkName": self.network("net-b"), "ipv4Config": {
                "cidr": "192.168.1.0/24", "serverIP": "192.168.1.2",
                "dns": ["192.168.1.53", "192.168.1.54", "192.168.1.55", "192.168.1.56"],
                "pool": {"start": "192.168.2.1", "end": "192.168.1.100"}}}),
        );
        let status = refused(
            "CREATE IPPool, start after end (mutator)",
            &self.mutator(),
            || create(&self.pools, &bad, DRY),
        )
        .await;
        let want = format!(
            "{}: cannot create IPPool {}/bad-range because invalid pool range",
            self.mutator(),
            self.ns
        );
        assert_eq!(status.message, want);
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    }

    /// Refused by the schema (four DNS servers) although the validator would refuse it too
    /// (start outside the subnet): the schema runs first and its message is the only one.
    async fn schema_runs_before_the_validator(&self) {
        let bad = pool_object(
            "schema-first",
            &json!({"networkName": self.network("net-b"), "ipv4Config": {
                "cidr": "192.168.1.0/24", "serverIP": "192.168.1.2",
                "dns": ["192.168.1.53", "192.168.1.54", "192.168.1.55", "192.168.1.56"],
                "pool": {"start": "192.168.0.200", "end": "192.168.1.100"}}}),
        );
        let status = refused(
            "CREATE IPPool, four DNS servers (schema)",
            "is invalid",
            || create(&self.pools, &bad, DRY),
        )
        .await;
        assert_eq!(
            status.message,
            "IPPool.network.harvesterhci.io \"schema-first\" is invalid: [spec.ipv4Config.dns: \
             Too many: 4: must have at most 3 items, <nil>: Invalid value: null: some validation \
             rules were not checked because the object was invalid; correct the existing errors \
             to complete validation]"
        );
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    }

    async fn validator_runs_last(&self) {
        let bad = pool_object(
            "bad-start",
            &json!({"networkName": self.network("net-b"), "ipv4Config": {
                "cidr": "192.168.1.0/24", "serverIP": "192.168.1.2",
                "pool": {"start": "192.168.0.200", "end": "192.168.1.100"}}}),
        );
        let status = refused(
            "CREATE IPPool, start outside the subnet (validator)",
            &self.validator(),
            || create(&self.pools, &bad, DRY),
        )
        .await;
        let want = format!(
            "{}: cannot create IPPool {}/bad-start because start ip 192.168.0.200 is not within subnet",
            self.validator(),
            self.ns
        );
        assert_eq!(status.message, want);
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    }

    /// Upstream's defaulting examples, as stored (or as a dry run would store them).
    async fn defaults_as_upstream(&self) {
        let bare = pool_object(
            "net-a",
            &json!({"networkName": self.network("net-a"), "ipv4Config": {"cidr": "192.168.0.0/24"}}),
        );
        let created = self
            .pools
            .create(&PostParams::default(), &bare)
            .await
            .expect("a pool with only a CIDR is defaulted and admitted");
        assert_eq!(
            defaults(&created),
            ("192.168.0.1", "192.168.0.1", "192.168.0.254")
        );
        for (cidr, want) in [
            (
                "192.168.0.128/29",
                ("192.168.0.130", "192.168.0.129", "192.168.0.134"),
            ),
            (
                "192.168.0.128/30",
                ("192.168.0.130", "192.168.0.129", "192.168.0.130"),
            ),
        ] {
            let pool = pool_object(
                "example",
                &json!({"networkName": self.network("net-b"),
                        "ipv4Config": {"cidr": cidr, "router": "192.168.0.129"}}),
            );
            let stored = create(&self.pools, &pool, DRY)
                .await
                .unwrap_or_else(|e| panic!("{cidr} with router .129 is admitted: {e}"));
            assert_eq!(defaults(&stored), want, "{cidr} with router .129");
        }
        let full = pool_object(
            "host-route",
            &json!({"networkName": self.network("net-b"), "ipv4Config": {"cidr": "192.168.0.5/32"}}),
        );
        let status = refused("CREATE IPPool, a /32 (mutator)", &self.mutator(), || {
            create(&self.pools, &full, DRY)
        })
        .await;
        let want = format!(
            "{}: cannot create IPPool {}/host-route because fail to assign ip for dhcp server",
            self.mutator(),
            self.ns
        );
        assert_eq!(status.message, want);
        assert_eq!(status.code, 422);
    }

    async fn refuses_bad_pools(&self) {
        let ns = &self.ns;
        let cases = [
            (
                "CREATE IPPool, no such NAD (validator)",
                pool_object(
                    "orphan",
                    &json!({"networkName": self.network("missing"),
                            "ipv4Config": {"cidr": "192.168.5.0/24"}}),
                ),
                format!(
                    "cannot create IPPool {ns}/orphan because \
                     network-attachment-definitions.k8s.cni.cncf.io \"missing\" not found"
                ),
            ),
            (
                "CREATE IPPool, overlaps the service CIDR (validator)",
                pool_object(
                    "services",
                    &json!({"networkName": self.network("net-b"),
                            "ipv4Config": {"cidr": "10.53.7.0/24"}}),
                ),
                format!(
                    "cannot create IPPool {ns}/services because \
                     cidr 10.53.7.0/24 overlaps cluster service cidr {SERVICE_CIDR}"
                ),
            ),
            (
                "CREATE IPPool, a second pool on net-a (validator, vmdhcp's rule)",
                pool_object(
                    "twin",
                    &json!({"networkName": self.network("net-a"),
                            "ipv4Config": {"cidr": "192.168.0.0/24"}}),
                ),
                format!(
                    "cannot create IPPool {ns}/twin because \
                     network {ns}/net-a is already served by IPPool {ns}/net-a"
                ),
            ),
        ];
        for (what, pool, cause) in cases {
            let want = format!("{}: {cause}", self.validator());
            // The webhook's cache may not have the first pool yet: wait for the exact text.
            let status = refused(what, &want, || create(&self.pools, &pool, DRY)).await;
            assert_eq!(status.message, want);
            assert_eq!(status.code, 422);
        }
    }

    /// CEL (the CRD) refuses an immutable field before the validator sees it; the validator
    /// judges the rest; an allowed change goes through.
    async fn checks_pool_updates(&self) {
        let cidr = json!({"spec": {"ipv4Config": {"cidr": "192.168.9.0/24"}}});
        let status = refused("UPDATE IPPool, new CIDR (CEL)", "is invalid", || {
            merge(&self.pools, "net-a", &cidr, DRY)
        })
        .await;
        assert_eq!(
            status.message,
            "IPPool.network.harvesterhci.io \"net-a\" is invalid: spec.ipv4Config.cidr: \
             Invalid value: \"192.168.9.0/24\": CIDR is immutable"
        );
        assert_eq!(status.code, 422);

        let router = json!({"spec": {"ipv4Config": {"router": "10.9.9.9"}}});
        let status = refused(
            "UPDATE IPPool, router outside the subnet (validator)",
            &self.validator(),
            || merge(&self.pools, "net-a", &router, DRY),
        )
        .await;
        let want = format!(
            "{}: cannot update IPPool {}/net-a because router ip 10.9.9.9 is not within subnet",
            self.validator(),
            self.ns
        );
        assert_eq!(status.message, want);
        assert_eq!(status.code, 422);

        let dns = json!({"spec": {"ipv4Config": {"dns": ["192.168.0.53"]}}});
        self.pools
            .patch("net-a", &PatchParams::default(), &Patch::Merge(&dns))
            .await
            .expect("a DNS server can be set");
    }

    /// A VM with a NIC on the managed and one on an unmanaged network. No controller runs
    /// here, so no NAD carries the back-labels the controller writes: the validator finds
    /// net-a's pool by network name, as the controller does, and checks the address.
    async fn checks_vmnetcfgs(&self) {
        let ns = &self.ns;
        let nads =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &e2e::nad_resource());
        let net_a = nads.get("net-a").await.expect("NAD net-a");
        assert!(
            !net_a
                .labels()
                .keys()
                .any(|k| k.starts_with("network.harvesterhci.io/ippool-")),
            "net-a must not carry IPPool labels: {:?}",
            net_a.labels()
        );
        let vm = vmnetcfg(
            ns,
            "vm-1",
            &json!([{"networkName": self.network("net-a"), "macAddress": "52:54:00:e2:e0:01",
                     "ipAddress": "192.168.0.20"},
                    {"networkName": self.network("net-b"), "macAddress": "52:54:00:e2:e0:02"}]),
        );
        self.cfgs
            .create(&PostParams::default(), &vm)
            .await
            .expect("a vmnetcfg with a managed and an unmanaged NIC is admitted");

        let outside = vmnetcfg(
            ns,
            "vm-2",
            &json!([{"networkName": self.network("net-a"), "macAddress": "52:54:00:e2:e0:03",
                     "ipAddress": "10.0.0.9"}]),
        );
        let want = format!(
            "{}: cannot create VirtualMachineNetworkConfig {ns}/vm-2 because \
             ip address 10.0.0.9 is not within subnet 192.168.0.0/24",
            self.validator()
        );
        let status = refused(
            "CREATE vmnetcfg, address outside the subnet (validator)",
            &want,
            || create(&self.cfgs, &outside, DRY),
        )
        .await;
        assert_eq!(status.message, want);
        assert_eq!(status.code, 422);

        let moved = json!({"spec": {"networkConfigs": [
            {"networkName": self.network("net-a"), "macAddress": "52:54:00:e2:e0:01",
             "ipAddress": "10.0.0.9"}]}});
        let want = format!(
            "{}: cannot update VirtualMachineNetworkConfig {ns}/vm-1 because \
             ip address 10.0.0.9 is not within subnet 192.168.0.0/24",
            self.update_validator()
        );
        let status = refused(
            "UPDATE vmnetcfg, address outside the subnet (update validator)",
            &want,
            || merge(&self.cfgs, "vm-1", &moved, DRY),
        )
        .await;
        assert_eq!(status.message, want);
        assert_eq!(status.code, 422);
    }

    async fn protects_a_pool_in_use(&self) {
        let ns = &self.ns;
        let want = format!(
            "{}: cannot delete IPPool {ns}/net-a because it's still used by \
             VirtualMachineNetworkConfig(s) {ns}/vm-1, which must be removed at first",
            self.validator()
        );
        let status = refused("DELETE IPPool in use (validator)", &want, || {
            delete(&self.pools, "net-a", DRY)
        })
        .await;
        assert_eq!(status.message, want);
        assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    }

    /// An update that adds a NIC, or moves one to another network, gets the create checks:
    /// a NAD that does not exist is refused as on create. A NIC added on a NAD that exists
    /// but has no pool is admitted.
    async fn updates_checked_as_creates(&self) {
        let ns = &self.ns;
        let nics = |third: Value| {
            json!({"spec": {"networkConfigs": [
                {"networkName": self.network("net-a"), "macAddress": "52:54:00:e2:e0:01",
                 "ipAddress": "192.168.0.20"},
                {"networkName": self.network("net-b"), "macAddress": "52:54:00:e2:e0:02"},
                third]}})
        };
        let added = nics(json!({"networkName": self.network("missing"),
                                "macAddress": "52:54:00:e2:e0:06"}));
        let want = format!(
            "{}: cannot update VirtualMachineNetworkConfig {ns}/vm-1 because \
             network-attachment-definitions.k8s.cni.cncf.io \"missing\" not found",
            self.update_validator()
        );
        let status = refused(
            "UPDATE vmnetcfg, a NIC added on a missing NAD (update validator)",
            &want,
            || merge(&self.cfgs, "vm-1", &added, DRY),
        )
        .await;
        assert_eq!(status.message, want);
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
        let fields: Vec<String> = status
            .details
            .iter()
            .flat_map(|d| &d.causes)
            .map(|c| c.field.clone())
            .collect();
        assert_eq!(fields, ["spec.networkConfigs[2].networkName"]);

        let moved = json!({"spec": {"networkConfigs": [
            {"networkName": self.network("net-a"), "macAddress": "52:54:00:e2:e0:01",
             "ipAddress": "192.168.0.20"},
            {"networkName": self.network("missing"), "macAddress": "52:54:00:e2:e0:02"}]}});
        let status = refused(
            "UPDATE vmnetcfg, a NIC moved to a missing NAD (update validator)",
            &want,
            || merge(&self.cfgs, "vm-1", &moved, DRY),
        )
        .await;
        assert_eq!(status.message, want);

        let unmanaged = nics(json!({"networkName": self.network("net-c"),
                                    "macAddress": "52:54:00:e2:e0:06"}));
        merge(&self.cfgs, "vm-1", &unmanaged, DRY)
            .await
            .expect("a NIC added on an existing NAD without pool is admitted");
        println!("ok: a NIC added on a NAD without pool is admitted");
    }

    /// A bare network name is the NAD of the object's own namespace (KubeVirt's reading),
    /// where upstream's webhook looked in `default`: only this namespace has a `net-a` here.
    async fn bare_names_resolve_in_the_objects_namespace(&self) {
        let ns = &self.ns;
        let outside = vmnetcfg(
            ns,
            "vm-bare",
            &json!([{"networkName": "net-a", "macAddress": "52:54:00:e2:e0:07",
                     "ipAddress": "10.0.0.9"}]),
        );
        let want = format!(
            "{}: cannot create VirtualMachineNetworkConfig {ns}/vm-bare because \
             ip address 10.0.0.9 is not within subnet 192.168.0.0/24",
            self.validator()
        );
        let status = refused(
            "CREATE vmnetcfg, bare network name, address outside the subnet (validator)",
            &want,
            || create(&self.cfgs, &outside, DRY),
        )
        .await;
        assert_eq!(status.message, want);
        let inside = vmnetcfg(
            ns,
            "vm-bare",
            &json!([{"networkName": "net-a", "macAddress": "52:54:00:e2:e0:07",
                     "ipAddress": "192.168.0.21"}]),
        );
        create(&self.cfgs, &inside, DRY)
            .await
            .expect("a bare name is checked against the pool of this namespace's NAD");

        let bare_pool = pool_object(
            "bare-c",
            &json!({"networkName": "net-c", "ipv4Config": {"cidr": "192.168.7.0/24"}}),
        );
        create(&self.pools, &bare_pool, DRY)
            .await
            .expect("an IPPool naming a NAD of its namespace by its bare name is admitted");
        let elsewhere = pool_object(
            "bare-x",
            &json!({"networkName": "nowhere", "ipv4Config": {"cidr": "192.168.7.0/24"}}),
        );
        let want = format!(
            "{}: cannot create IPPool {ns}/bare-x because \
             network-attachment-definitions.k8s.cni.cncf.io \"nowhere\" not found",
            self.validator()
        );
        let status = refused(
            "CREATE IPPool, bare name of no NAD (validator)",
            &want,
            || create(&self.pools, &elsewhere, DRY),
        )
        .await;
        assert_eq!(status.message, want);
    }

    /// Zero and odd values upstream accepted are admitted: `leaseTime` 0 (the default lease,
    /// silently), negative, short or beyond 32 bits (with a warning), `domainName: ""` and
    /// empty lists. Defaulting leaves them as written.
    async fn accepts_what_upstream_accepts(&self) {
        let cases = [
            (0_i64, None),
            (
                -1,
                Some(
                    "spec.ipv4Config.leaseTime: lease time -1 is not positive: leases last the \
                     default 31536000 seconds (one year)",
                ),
            ),
            (
                30,
                Some(
                    "spec.ipv4Config.leaseTime: lease time 30 is shorter than 60 seconds: \
                     clients renew several times a minute",
                ),
            ),
            (
                1 << 40,
                Some(
                    "spec.ipv4Config.leaseTime: lease time 1099511627776 is longer than the \
                     longest finite DHCP lease: 4294967294 seconds are sent",
                ),
            ),
        ];
        for (lease, warning) in cases {
            let pool = pool_object(
                "zero",
                &json!({"networkName": self.network("net-c"), "ipv4Config": {
                    "cidr": "192.168.6.0/24", "leaseTime": lease, "domainName": "",
                    "dns": [], "ntp": [], "domainSearch": [], "pool": {"exclude": []}}}),
            );
            let (stored, warnings) = dry_create_with_warnings(&self.client, &self.ns, &pool)
                .await
                .unwrap_or_else(|e| panic!("leaseTime {lease} is admitted: {e}"));
            let cfg = &stored["spec"]["ipv4Config"];
            assert_eq!(cfg["leaseTime"], lease, "{stored}");
            assert_eq!(cfg["domainName"], "", "{stored}");
            assert_eq!(cfg["pool"]["start"], "192.168.6.1", "{stored}");
            assert_eq!(
                warnings,
                warning.map(str::to_owned).into_iter().collect::<Vec<_>>(),
                "leaseTime {lease}"
            );
            println!("ok: leaseTime {lease} admitted, warnings {warnings:?}");
        }
        let zero = json!({"spec": {"ipv4Config": {"leaseTime": 0, "domainName": ""}}});
        merge(&self.pools, "net-a", &zero, DRY)
            .await
            .expect("leaseTime 0 and an empty domain name can be set on an existing pool");
    }

    /// Runs `kubectl` as a user would and compares what it prints with the expected text,
    /// and that text (names written as in a Harvester install) with docs/webhook.md.
    async fn kubectl_prints_what_the_docs_show(&self) {
        let Some(kubectl) = kubectl() else {
            return;
        };
        let ns = &self.ns;
        create_nad(&self.client, ns, "net-48").await;
        let dir = std::env::temp_dir().join(format!("{ns}-kubectl"));
        std::fs::create_dir_all(&dir).expect("a directory for pool.yaml");
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/webhook.md"),
        )
        .expect("docs/webhook.md");
        let run = |case: &KubectlCase| {
            let kubectl = kubectl.clone();
            let (dir, kubeconfig, ns) = (dir.clone(), self.kubeconfig.clone(), ns.clone());
            let case = case.clone();
            async move {
                tokio::task::spawn_blocking(move || case.run(&kubectl, &dir, &kubeconfig, &ns))
                    .await
                    .expect("kubectl task")
            }
        };
        let pool = |name: &str, network: &str, ipv4: Value| {
            json!({"apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
                   "metadata": {"name": name, "namespace": ns},
                   "spec": {"networkName": self.network(network), "ipv4Config": ipv4}})
        };
        let cases = [
            KubectlCase::create(
                pool(
                    "net-48",
                    "net-48",
                    json!({"cidr": "192.168.48.0/24", "pool": {"start": "192.168.47.1"}}),
                ),
                "The IPPool \"net-48\" is invalid: spec.ipv4Config.pool.start: start ip \
                 192.168.47.1 is not within subnet",
            ),
            KubectlCase::create(
                pool(
                    "net-48",
                    "net-48",
                    json!({"cidr": "192.168.48.0/24", "leaseTime": -1}),
                ),
                "Warning: spec.ipv4Config.leaseTime: lease time -1 is not positive: leases last \
                 the default 31536000 seconds (one year)\n\
                 ippool.network.harvesterhci.io/net-48 created",
            ),
            KubectlCase::create(
                pool("svc", "net-48", json!({"cidr": "10.53.7.0/24"})),
                "The IPPool \"svc\" is invalid: \n\
                 * spec.ipv4Config.cidr: cidr 10.53.7.0/24 overlaps cluster service cidr 10.53.0.0/16\n\
                 * spec.networkName: network {ns}/net-48 is already served by IPPool {ns}/net-48",
            ),
        ];
        for case in &cases {
            self.kubectl_case(case, &doc, &run).await;
        }
        let vm = vmnetcfg(
            ns,
            "vm-48",
            &json!([{"networkName": self.network("net-48"), "macAddress": "52:54:00:e2:e0:48"}]),
        );
        self.cfgs
            .create(&PostParams::default(), &vm)
            .await
            .expect("a vmnetcfg on net-48");
        // Refused through the API first: kubectl's delete is real, and must not slip past a
        // webhook whose cache has not seen vm-48 yet.
        refused(
            "DELETE IPPool net-48 in use (validator)",
            "which must be removed at first",
            || delete(&self.pools, "net-48", DRY),
        )
        .await;
        let cases = [
            KubectlCase::command(
                "kubectl patch vmnetcfg vm-48 --type=json -p '[{\"op\": \"add\", \"path\": \
                 \"/spec/networkConfigs/-\", \"value\": {\"networkName\": \"{ns}/net-49\", \
                 \"macAddress\": \"52:54:00:e2:e0:49\"}}]'",
                "The VirtualMachineNetworkConfig \"vm-48\" is invalid: \
                 spec.networkConfigs[1].networkName: \
                 network-attachment-definitions.k8s.cni.cncf.io \"net-49\" not found",
            ),
            KubectlCase::command(
                "kubectl delete ippool net-48",
                "Error from server (Conflict): admission webhook \"validator.{hook}\" denied the \
                 request: cannot delete IPPool {ns}/net-48 because it's still used by \
                 VirtualMachineNetworkConfig(s) {ns}/vm-48, which must be removed at first",
            ),
        ];
        for case in &cases {
            self.kubectl_case(case, &doc, &run).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn kubectl_case<F, Fut>(&self, case: &KubectlCase, doc: &str, run: &F)
    where
        F: Fn(&KubectlCase) -> Fut,
        Fut: Future<Output = String>,
    {
        let want = case.expect_for(&self.ns, &format!("{}.{NAME}", self.ns));
        let last = RefCell::new(String::new());
        e2e::eventually(&case.shown_for("default"), WAIT, || {
            let (last, want) = (&last, &want);
            let answer = run(case);
            async move {
                let got = answer.await;
                if trim_lines(&got) == trim_lines(want) {
                    return Some(());
                }
                if got != *last.borrow() {
                    println!("   kubectl: not yet:\n{got}");
                    *last.borrow_mut() = got;
                }
                None
            }
        })
        .await;
        println!("$ {}\n{want}", case.shown_for(&self.ns));
        // As the docs write names: a Harvester install's webhook, objects in `default`.
        let documented = format!(
            "$ {}\n{}",
            case.shown_for("default"),
            case.expect_for("default", HARVESTER_WEBHOOK)
        );
        assert!(
            trim_lines(doc).contains(&trim_lines(&documented)),
            "docs/webhook.md must show what kubectl prints:\n{documented}"
        );
    }

    /// The Secrets exist, the caBundle is their CA, and registering again changes nothing:
    /// what the API server stored (defaults, match conditions) compares equal to ours.
    async fn registered_once_with_the_stored_ca(&self) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let ca = secrets
            .get(&format!("{NAME}-ca"))
            .await
            .expect("the CA Secret");
        let ca_pem = ca.data.expect("CA data")["tls.crt"].clone();
        secrets
            .get(&format!("{NAME}-tls"))
            .await
            .expect("the serving Secret");
        let stored = Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .get(NAME)
            .await
            .expect("the validating configuration");
        let hooks = stored.webhooks.expect("webhooks");
        assert_eq!(hooks.len(), 2);
        for hook in &hooks {
            assert_eq!(hook.client_config.ca_bundle, Some(ca_pem.clone()));
            assert_eq!(
                hook.match_conditions,
                Some(registration::match_conditions()),
                "the API server keeps the match conditions of {}",
                hook.name
            );
        }
        let reg = Registration {
            name: NAME.to_owned(),
            namespace: self.ns.clone(),
            ca_bundle: ByteString::clone(&ca_pem).0,
            target: Target::Url(format!("https://127.0.0.1:{}", self.port)),
        };
        let again = registration::apply(&self.client, &reg)
            .await
            .expect("registering again");
        assert_eq!(again, (Outcome::Kept, Outcome::Kept));

        // As a configuration written by an older version looks: without match conditions.
        // The dry run shows the server would store something else, so it is rewritten.
        let strip = Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "remove", "path": "/webhooks/0/matchConditions"},
                {"op": "remove", "path": "/webhooks/1/matchConditions"},
            ]))
            .expect("a JSON patch"),
        );
        let configurations = Api::<ValidatingWebhookConfiguration>::all(self.client.clone());
        configurations
            .patch(NAME, &PatchParams::default(), &strip)
            .await
            .expect("match conditions removed by hand");
        let repaired = registration::apply(&self.client, &reg)
            .await
            .expect("registering after the edit");
        assert_eq!(repaired, (Outcome::Updated, Outcome::Kept));
        let stored = configurations.get(NAME).await.expect("the configuration");
        for hook in stored.webhooks.expect("webhooks") {
            assert_eq!(
                hook.match_conditions,
                Some(registration::match_conditions())
            );
        }
    }

    /// As the controller leaves them: a pool and a vmnetcfg with its finalizer, deleted while
    /// the webhook still answered, waiting for the finalizer to go.
    async fn prepare_bookkeeping(&self) {
        let ns = &self.ns;
        let mut pool = pool_object(
            "leaving",
            &json!({"networkName": self.network("net-c"), "ipv4Config": {"cidr": "192.168.3.0/24"}}),
        );
        pool.metadata.finalizers = Some(vec![FINALIZER_IPPOOL.to_owned()]);
        self.pools
            .create(&PostParams::default(), &pool)
            .await
            .expect("a pool with the controller's finalizer");
        let mut cfg = vmnetcfg(
            ns,
            "vm-3",
            &json!([{"networkName": self.network("net-b"), "macAddress": "52:54:00:e2:e0:04"}]),
        );
        cfg.metadata.finalizers = Some(vec![FINALIZER_VMNETCFG.to_owned()]);
        self.cfgs
            .create(&PostParams::default(), &cfg)
            .await
            .expect("a vmnetcfg with the controller's finalizer");
        self.pools
            .delete("leaving", &DeleteParams::default())
            .await
            .expect("an unused pool can be deleted");
        self.cfgs
            .delete("vm-3", &DeleteParams::default())
            .await
            .expect("a vmnetcfg can be deleted");
        for kind in ["leaving", "vm-3"] {
            let deleting = if kind == "leaving" {
                self.pools.get(kind).await.map(|o| o.metadata)
            } else {
                self.cfgs.get(kind).await.map(|o| o.metadata)
            }
            .expect("still there, held by its finalizer");
            assert!(deleting.deletion_timestamp.is_some(), "{kind} is deleting");
        }
    }

    /// The port refuses connections: the API server's next call fails to connect.
    async fn webhook_is_down(&self) {
        let port = self.port;
        e2e::eventually("the webhook port to close", WAIT, || async move {
            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_err()
                .then_some(())
        })
        .await;
        let stored = Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .get_opt(NAME)
            .await
            .expect("read the validating configuration");
        assert!(stored.is_some(), "the configuration stays registered");
    }

    /// What the controller writes, with nobody answering at the webhook's address.
    async fn bookkeeping_without_the_webhook(&self) {
        // (a) The finalizer helper's JSON patch (test, then remove) on the deleting objects.
        let release = |finalizer: &str| {
            Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": [finalizer]},
                    {"op": "remove", "path": "/metadata/finalizers/0"},
                ]))
                .expect("a JSON patch"),
            )
        };
        self.pools
            .patch(
                "leaving",
                &PatchParams::default(),
                &release(FINALIZER_IPPOOL),
            )
            .await
            .expect("the finalizer of a deleting IPPool can be removed");
        self.cfgs
            .patch(
                "vm-3",
                &PatchParams::default(),
                &release(FINALIZER_VMNETCFG),
            )
            .await
            .expect("the finalizer of a deleting vmnetcfg can be removed");
        let (pools, cfgs) = (&self.pools, &self.cfgs);
        e2e::eventually("the released objects to be gone", WAIT, || async move {
            let pool = pools.get_opt("leaving").await.ok()?;
            let cfg = cfgs.get_opt("vm-3").await.ok()?;
            (pool.is_none() && cfg.is_none()).then_some(())
        })
        .await;
        println!("ok: finalizers removed from a deleting IPPool and vmnetcfg");

        // The controller adding its finalizer to live objects: a metadata-only update.
        let adopt = |finalizer: &str| {
            Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
                ]))
                .expect("a JSON patch"),
            )
        };
        self.pools
            .patch("net-a", &PatchParams::default(), &adopt(FINALIZER_IPPOOL))
            .await
            .expect("a finalizer can be added to a live IPPool");
        self.cfgs
            .patch("vm-1", &PatchParams::default(), &adopt(FINALIZER_VMNETCFG))
            .await
            .expect("a finalizer can be added to a live vmnetcfg");
        println!("ok: finalizers added to a live IPPool and vmnetcfg");

        // (b) Status writes, through the status subresource.
        let now = jiff::Timestamp::now().to_string();
        let status = json!({"status": {"lastUpdate": now,
            "ipv4": {"allocated": {"192.168.0.20": "52:54:00:e2:e0:01"}, "used": 1, "available": 252},
            "conditions": [{"type": "Registered", "status": "True", "lastUpdateTime": now}]}});
        let written = self
            .pools
            .patch_status("net-a", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("an IPPool's status can be written");
        assert_eq!(written.data["status"]["ipv4"]["used"], 1);
        let status = json!({"status": {"networkConfigs": [{"allocatedIPAddress": "192.168.0.20",
            "macAddress": "52:54:00:e2:e0:01", "networkName": self.network("net-a"),
            "state": "Allocated"}]}});
        self.cfgs
            .patch_status("vm-1", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("a vmnetcfg's status can be written");
        println!("ok: status of an IPPool and a vmnetcfg written");

        // (d) The VM's NIC got a new MAC: the controller rewrites the vmnetcfg's spec.
        let mut cfg = self.cfgs.get("vm-1").await.expect("vm-1");
        "52:54:00:e2:e0:11".clone_into(&mut cfg.spec.network_configs[0].mac_address);
        let replaced = self
            .cfgs
            .replace("vm-1", &PostParams::default(), &cfg)
            .await
            .expect("a vmnetcfg's spec can be rewritten");
        assert_eq!(
            replaced.spec.network_configs[0].mac_address,
            "52:54:00:e2:e0:11"
        );
        println!("ok: a vmnetcfg's spec rewritten");
    }

    /// Fail closed: what users create, change or delete still needs the validator.
    async fn user_input_still_refused(&self) {
        let ns = &self.ns;
        let unreachable = format!(
            "Internal error occurred: failed calling webhook \"validator.{ns}.{NAME}\": \
             failed to call webhook: Post \"https://127.0.0.1:{}/v1/webhook/validation?timeout=10s\"",
            self.port
        );
        let bad = pool_object(
            "bad-start",
            &json!({"networkName": self.network("net-b"), "ipv4Config": {
                "cidr": "192.168.1.0/24", "serverIP": "192.168.1.2",
                "pool": {"start": "192.168.0.200", "end": "192.168.1.100"}}}),
        );
        let status = refused(
            "CREATE IPPool, start outside the subnet, webhook down",
            &unreachable,
            || create(&self.pools, &bad, REAL),
        )
        .await;
        assert!(
            status.message.contains("connection refused"),
            "{}",
            status.message
        );
        assert_eq!(
            (status.code, status.reason.as_str()),
            (500, "InternalError")
        );

        // The mutator is `Ignore`: without it the schema wants what it would have filled in.
        let bare = pool_object(
            "bare",
            &json!({"networkName": self.network("net-b"), "ipv4Config": {"cidr": "192.168.1.0/24"}}),
        );
        let status = refused(
            "CREATE IPPool without serverIP, webhook down (schema)",
            "is invalid",
            || create(&self.pools, &bare, REAL),
        )
        .await;
        assert!(
            status
                .message
                .contains("spec.ipv4Config.serverIP: Required value"),
            "{}",
            status.message
        );

        let dns = json!({"spec": {"ipv4Config": {"dns": ["192.168.0.54"]}}});
        let status = refused("UPDATE IPPool spec, webhook down", &unreachable, || {
            merge(&self.pools, "net-a", &dns, REAL)
        })
        .await;
        assert_eq!(status.code, 500);
        let status = refused("DELETE IPPool, webhook down", &unreachable, || {
            delete(&self.pools, "net-a", REAL)
        })
        .await;
        assert_eq!(status.code, 500);
        let cfg = vmnetcfg(
            ns,
            "vm-4",
            &json!([{"networkName": self.network("net-b"), "macAddress": "52:54:00:e2:e0:05"}]),
        );
        let status = refused("CREATE vmnetcfg, webhook down", &unreachable, || {
            create(&self.cfgs, &cfg, REAL)
        })
        .await;
        assert_eq!(status.code, 500);
    }

    /// The webhook's own HTTPS server on the same address with the registered certificate,
    /// its caches never synced: validation answers HTTP 503 after a short wait, which the API
    /// server turns into the same refusal as an unreachable webhook. Defaulting and the
    /// controller's bookkeeping are unaffected.
    async fn unsynced_webhook_refuses_user_input(&self) {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .get(&secrets::tls_secret_name(NAME))
            .await
            .expect("the serving Secret");
        let pair = secrets::read_pair(&secret).expect("a usable serving certificate");
        let resolver = Arc::new(CertResolver::new(
            tls::certified_key(&pair).expect("the serving key"),
        ));
        let tls_config = Arc::new(tls::server_config(resolver).expect("a TLS configuration"));
        let (_never, synced) = watch::channel(false);
        let app = server::router(Admission {
            cluster: Caches::from_objects(vec![], vec![], vec![]),
            settings: Settings::default(),
            synced,
            sync_wait: Duration::from_secs(1),
        });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, self.port))
            .await
            .expect("the webhook's port, again");
        let stop = CancellationToken::new();
        let _stop = stop.clone().drop_guard();
        tokio::spawn(server::serve(listener, tls_config, app, stop));

        let bad = pool_object(
            "bad-start",
            &json!({"networkName": self.network("net-b"), "ipv4Config": {
                "cidr": "192.168.1.0/24", "serverIP": "192.168.1.2",
                "pool": {"start": "192.168.0.200", "end": "192.168.1.100"}}}),
        );
        let want = format!(
            "Internal error occurred: failed calling webhook \"validator.{}.{NAME}\": \
             failed to call webhook: the server is currently unable to handle the request",
            self.ns
        );
        let status = refused(
            "CREATE IPPool, start outside the subnet, caches not synced",
            "failed calling webhook",
            || create(&self.pools, &bad, DRY),
        )
        .await;
        assert_eq!(status.message, want);
        assert_eq!(status.code, 500);

        // The mutator answers without caches: a bare pool is defaulted, then the validator
        // refuses it.
        let bare = pool_object(
            "bare",
            &json!({"networkName": self.network("net-b"), "ipv4Config": {"cidr": "192.168.1.0/24"}}),
        );
        let status = refused(
            "CREATE IPPool without serverIP, caches not synced",
            "failed calling webhook",
            || create(&self.pools, &bare, DRY),
        )
        .await;
        assert_eq!(status.message, want);

        let label = json!({"metadata": {"labels": {"e2e": "unsynced"}}});
        merge(&self.pools, "net-a", &label, REAL)
            .await
            .expect("a metadata-only update needs no validator");
    }
}

/// Repeats `call` until the API server refuses it with a message containing `expect`, prints
/// that refusal as a client gets it, and returns it. Earlier answers (the configuration not
/// loaded yet, a cache behind) are printed once each.
async fn refused<T, F, Fut>(what: &str, expect: &str, call: F) -> Status
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let last = RefCell::new(String::new());
    let status = e2e::eventually(what, WAIT, || {
        let answer = call();
        let last = &last;
        async move {
            let seen = match answer.await {
                Err(kube::Error::Api(status)) if status.message.contains(expect) => {
                    return Some(*status);
                }
                Err(kube::Error::Api(s)) => format!("HTTP {} {}: {}", s.code, s.reason, s.message),
                Err(e) => e.to_string(),
                Ok(_) => "admitted".to_owned(),
            };
            if seen != *last.borrow() {
                println!("   {what}: not yet: {seen}");
                *last.borrow_mut() = seen;
            }
            None
        }
    })
    .await;
    println!(
        "{what}\n   HTTP {} {}: {}",
        status.code, status.reason, status.message
    );
    status
}

/// Deletes both configurations; absent ones are fine.
async fn delete_configurations(client: &Client) {
    let dp = DeleteParams::default();
    let validating = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete(NAME, &dp)
        .await;
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete(NAME, &dp)
        .await;
    for (kind, result) in [
        ("ValidatingWebhookConfiguration", validating.err()),
        ("MutatingWebhookConfiguration", mutating.err()),
    ] {
        match result {
            None => {}
            Some(kube::Error::Api(status)) if status.code == 404 => {}
            Some(e) => eprintln!("cannot delete {kind} {NAME}: {e}"),
        }
    }
}

/// Clears the finalizers this test put on, so the namespace can go.
async fn release_finalizers(client: &Client, ns: &str) {
    let clear = json!({"metadata": {"finalizers": null}});
    let pools: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &pool_resource());
    let cfgs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<VirtualMachineNetworkConfig>(&()),
    );
    for api in [pools, cfgs] {
        let Ok(list) = api.list(&ListParams::default()).await else {
            continue;
        };
        for object in list.items {
            if object.finalizers().is_empty() {
                continue;
            }
            let name = object.name_any();
            if let Err(e) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&clear))
                .await
            {
                eprintln!("cannot clear the finalizers of {name}: {e}");
            }
        }
    }
}

/// `serverIP`, `pool.start`, `pool.end` of a returned IPPool.
fn defaults(pool: &DynamicObject) -> (&str, &str, &str) {
    let cfg = &pool.data["spec"]["ipv4Config"];
    (
        cfg["serverIP"].as_str().unwrap_or_default(),
        cfg["pool"]["start"].as_str().unwrap_or_default(),
        cfg["pool"]["end"].as_str().unwrap_or_default(),
    )
}

const DRY: bool = true;
const REAL: bool = false;

/// `create`, as a future that owns its parameters (for [`refused`]'s retries).
async fn create<K>(api: &Api<K>, object: &K, dry_run: bool) -> Result<K, kube::Error>
where
    K: Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PostParams {
        dry_run,
        field_manager: None,
    };
    api.create(&params, object).await
}

/// A JSON merge patch of the main resource.
async fn merge<K>(api: &Api<K>, name: &str, patch: &Value, dry_run: bool) -> Result<K, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams {
        dry_run,
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(patch)).await
}

async fn delete<K>(api: &Api<K>, name: &str, dry_run: bool) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        dry_run,
        ..DeleteParams::default()
    };
    api.delete(name, &params).await.map(|_| ())
}

fn pool_resource() -> ApiResource {
    ApiResource::erase::<IPPool>(&())
}

/// An IPPool as raw JSON: the tests send fields the typed struct would fill in or drop.
fn pool_object(name: &str, spec: &Value) -> DynamicObject {
    let mut object = DynamicObject::new(name, &pool_resource());
    object.data = json!({ "spec": spec });
    object
}

fn vmnetcfg(ns: &str, name: &str, nics: &Value) -> VirtualMachineNetworkConfig {
    serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"vmName": name, "networkConfigs": nics}
    }))
    .expect("a vmnetcfg")
}

async fn create_nad(client: &Client, ns: &str, name: &str) {
    let mut nad = DynamicObject::new(name, &e2e::nad_resource()).within(ns);
    nad.metadata.labels = Some(BTreeMap::new());
    nad.data = json!({"spec": {"config": json!({
        "cniVersion": "0.3.1", "name": name, "type": "bridge", "bridge": "mgmt-br", "ipam": {}
    }).to_string()}});
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &e2e::nad_resource())
        .create(&PostParams::default(), &nad)
        .await
        .unwrap_or_else(|e| panic!("create NAD {name}: {e}"));
}

/// One `kubectl` call of the docs: the command as shown (`{ns}` stands for the namespace),
/// the manifest it reads as `pool.yaml` if any, and what it prints (`{ns}`, and `{hook}` for
/// `<namespace>.<name>` of the webhooks).
#[derive(Clone)]
struct KubectlCase {
    shown: String,
    manifest: Option<Value>,
    expect: String,
}

impl KubectlCase {
    fn create(manifest: Value, expect: &str) -> Self {
        Self {
            shown: "kubectl create -f pool.yaml".to_owned(),
            manifest: Some(manifest),
            expect: expect.to_owned(),
        }
    }

    fn command(shown: &str, expect: &str) -> Self {
        Self {
            shown: shown.to_owned(),
            manifest: None,
            expect: expect.to_owned(),
        }
    }

    fn shown_for(&self, ns: &str) -> String {
        self.shown.replace("{ns}", ns)
    }

    fn expect_for(&self, ns: &str, hook: &str) -> String {
        self.expect.replace("{hook}", hook).replace("{ns}", ns)
    }

    /// Runs the command through `sh` in `dir` as shown, in namespace `ns`; returns what it
    /// printed, stderr (warnings, errors) first as a terminal shows it.
    fn run(&self, kubectl: &Path, dir: &Path, kubeconfig: &Path, ns: &str) -> String {
        if let Some(manifest) = &self.manifest {
            std::fs::write(dir.join("pool.yaml"), manifest.to_string()).expect("write pool.yaml");
        }
        let shown = self.shown_for(ns);
        let args = shown.strip_prefix("kubectl ").expect("a kubectl command");
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("\"$KUBECTL\" {args} --namespace \"$NS\""))
            .env("KUBECTL", kubectl)
            .env("NS", ns)
            .env("KUBECONFIG", kubeconfig)
            .current_dir(dir)
            .output()
            .expect("run kubectl");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        )
        .trim_end()
        .to_owned()
    }
}

/// `kubectl` from `$KUBECTL` or the `PATH`; `None` (after [`e2e::unavailable`]) without one.
fn kubectl() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        e2e::unavailable(
            "kubectl is not installed (set KUBECTL or put it on the PATH): the kubectl output \
             shown in docs/webhook.md is not checked",
        );
    }
    found
}

/// Trailing blanks dropped from every line: `kubectl` ends `is invalid: ` with one, which
/// Markdown cannot show.
fn trim_lines(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Creates `object` in the IPPools of `ns` in a dry run; returns what the server would store
/// and the admission warnings it sent (HTTP `Warning` headers, as `kubectl` prints them).
async fn dry_create_with_warnings(
    client: &Client,
    ns: &str,
    object: &DynamicObject,
) -> Result<(Value, Vec<String>), String> {
    use http_body_util::BodyExt;
    let uri = format!("/apis/network.harvesterhci.io/v1alpha1/namespaces/{ns}/ippools?dryRun=All");
    let body = serde_json::to_vec(object).map_err(|e| e.to_string())?;
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(body))
        .map_err(|e| e.to_string())?;
    let response = client.send(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    // `299 - "<text>"` (RFC 7234 §5.5); the API server sends one header per warning.
    let warnings = response
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            v.strip_prefix("299 - \"")
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_owned()
        })
        .collect();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", value["message"]));
    }
    Ok((value, warnings))
}
