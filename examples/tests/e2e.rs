//! The whole system on a real API server (`docs/e2e.md`): the three programs together, each
//! authenticated as the ServiceAccount the Helm chart gives it and authorised by exactly the
//! chart's RBAC, with the chart's own arguments.
//!
//! The chart is read from its checked-in render (`deploy/chart-tests/default.yaml`, which
//! `vmdhcp-api/tests/chart.rs` keeps equal to `helm template`), with the release namespace
//! replaced by the test's namespace. Its ServiceAccounts, Roles, ClusterRoles and bindings are
//! applied; each program gets a kubeconfig with a token from the TokenRequest API for its
//! ServiceAccount. The webhook is registered by URL (the API server calls it on 127.0.0.1), the
//! controller runs with leader election as deployed, and the agent serves a real udhcpc across
//! a veth pair. Needs root (network namespaces) and udhcpc.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
use vmdhcp_examples::e2e::{self, Cluster};
use vmdhcp_examples::netns::{self, SERVER_IF, Topology};

/// The release namespace in the checked-in render.
const RENDERED_NAMESPACE: &str = "harvester-system";
const CONTROLLER_SA: &str = "harvester-vm-dhcp-controller";
const AGENT_SA: &str = "harvester-vm-dhcp-controller-agent";
const WEBHOOK_SA: &str = "harvester-vm-dhcp-controller-webhook";
const VM_MAC: &str = "02:00:00:98:00:01";
const WAIT: Duration = Duration::from_secs(90);

fn chart_render() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/chart-tests/default.yaml")
}

/// The rendered chart's documents, in namespace `ns` instead of the rendered one.
fn chart_docs(ns: &str) -> Vec<Value> {
    let path = chart_render();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .replace(RENDERED_NAMESPACE, ns);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn resource_of(doc: &Value) -> Option<(ApiResource, bool)> {
    let kind = doc["kind"].as_str()?;
    let (group, version, plural, namespaced) = match kind {
        "ServiceAccount" => ("", "v1", "serviceaccounts", true),
        "Role" => ("rbac.authorization.k8s.io", "v1", "roles", true),
        "RoleBinding" => ("rbac.authorization.k8s.io", "v1", "rolebindings", true),
        "ClusterRole" => ("rbac.authorization.k8s.io", "v1", "clusterroles", false),
        "ClusterRoleBinding" => (
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            false,
        ),
        _ => return None,
    };
    Some((
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural),
        namespaced,
    ))
}

/// Applies the chart's ServiceAccounts and RBAC (nothing else: no nodes run its Deployments)
/// and returns the cluster-scoped objects it created, for removal.
async fn apply_rbac(client: &Client, docs: &[Value]) -> Vec<(ApiResource, String)> {
    let mut cluster_scoped = Vec::new();
    for doc in docs {
        let Some((ar, namespaced)) = resource_of(doc) else {
            continue;
        };
        let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("a chart object");
        let name = obj.name_any();
        let api: Api<DynamicObject> = if namespaced {
            let ns = obj
                .namespace()
                .expect("a namespaced chart object has a namespace");
            Api::namespaced_with(client.clone(), &ns, &ar)
        } else {
            cluster_scoped.push((ar.clone(), name.clone()));
            Api::all_with(client.clone(), &ar)
        };
        api.patch(
            &name,
            &PatchParams::apply("vmdhcp-e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {name}: {e}", ar.kind));
    }
    cluster_scoped
}

/// The `args` of the chart's Deployment `name`.
fn chart_args(docs: &[Value], deployment: &str) -> Vec<String> {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == deployment)
        .unwrap_or_else(|| panic!("the chart has no Deployment {deployment}"));
    doc["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect()
}

/// One of the programs, running in this process until stopped.
struct Program {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Program {
    fn spawn<F>(what: &'static str, stop: CancellationToken, run: F) -> Self
    where
        F: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let task = tokio::spawn(async move {
            if let Err(e) = run.await {
                panic!("the {what} stopped: {e}");
            }
        });
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

/// The webhook with the chart's arguments, registered by URL, authenticated as its
/// ServiceAccount.
async fn start_webhook(cluster: &Cluster, docs: &[Value], ns: &str, dir: &Path) -> Program {
    let kubeconfig =
        e2e::service_account_kubeconfig(cluster, ns, WEBHOOK_SA, &dir.join("webhook.kubeconfig"))
            .await
            .expect("webhook token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("webhook port");
    let port = listener.local_addr().expect("webhook address").port();
    let mut line = vec!["vmdhcp-webhook".to_owned()];
    line.extend(chart_args(docs, "harvester-vm-dhcp-controller-webhook"));
    line.extend([
        "--webhook-url".to_owned(),
        format!("https://127.0.0.1:{port}"),
        "--extra-san".to_owned(),
        "127.0.0.1".to_owned(),
        "--kubeconfig".to_owned(),
        kubeconfig.display().to_string(),
    ]);
    let args = vmdhcp_webhook::cli::Args::try_parse_from(&line).expect("webhook arguments");
    let config = vmdhcp_webhook::run::Config::from_args(&args).expect("webhook config");
    let client = e2e::client_for(&kubeconfig).await.expect("webhook client");
    let stop = CancellationToken::new();
    let run = vmdhcp_webhook::run::run(client, config, listener, stop.clone());
    Program::spawn("webhook", stop, async move {
        run.await.map_err(|e| e.to_string())
    })
}

/// The controller with the chart's arguments (leader election on, as deployed), authenticated
/// as its ServiceAccount.
async fn start_controller(cluster: &Cluster, docs: &[Value], ns: &str, dir: &Path) -> Program {
    let kubeconfig = e2e::service_account_kubeconfig(
        cluster,
        ns,
        CONTROLLER_SA,
        &dir.join("controller.kubeconfig"),
    )
    .await
    .expect("controller token");
    let mut line = vec!["vmdhcp-controller".to_owned()];
    line.extend(chart_args(docs, "harvester-vm-dhcp-controller"));
    line.extend([
        "--kubeconfig".to_owned(),
        kubeconfig.display().to_string(),
        "--metrics-bind".to_owned(),
        "127.0.0.1:0".to_owned(),
    ]);
    let args = vmdhcp_controller::cli::Args::try_parse_from(&line).expect("controller arguments");
    let stop = CancellationToken::new();
    let run = vmdhcp_controller::run::run(args, stop.clone());
    Program::spawn("controller", stop, async move {
        run.await.map_err(|e| e.to_string())
    })
}

/// Waits until the webhook's configurations are registered and answer: a pool on a missing NAD
/// is refused by the validator.
async fn await_webhook(client: &Client, ns: &str) {
    let pools: Api<IPPool> = Api::namespaced(client.clone(), ns);
    let probe = pool(ns, "probe", "missing-nad");
    e2e::eventually(
        "the webhook to refuse a pool on a missing NAD",
        WAIT,
        || {
            let pools = pools.clone();
            let probe = probe.clone();
            async move {
                match pools.create(&PostParams::default(), &probe).await {
                    Err(kube::Error::Api(e)) if e.message.contains("validator.") => Some(()),
                    Ok(_) => {
                        // Created before the webhook was registered: remove and try again.
                        let _ = pools.delete("probe", &DeleteParams::default()).await;
                        None
                    }
                    Err(_) => None,
                }
            }
        },
    )
    .await;
}

fn pool(ns: &str, name: &str, nad: &str) -> IPPool {
    serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": name, "namespace": ns},
        // serverIP and the range are left to the mutator.
        "spec": {"networkName": format!("{ns}/{nad}"), "ipv4Config": {
            "cidr": "10.98.0.0/24", "router": "10.98.0.254",
            "dns": ["10.98.0.53"], "domainName": "e2e.test", "leaseTime": 600,
            "pool": {"exclude": ["10.98.0.2"]}}}
    }))
    .expect("an IPPool")
}

async fn create_nad(client: &Client, ns: &str, name: &str) {
    let nads: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &e2e::nad_resource());
    let nad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "labels": {
            "network.harvesterhci.io/clusternetwork": "mgmt",
            "network.harvesterhci.io/ready": "true",
            "network.harvesterhci.io/type": "L2VlanNetwork",
            "network.harvesterhci.io/vlan-id": "98"}},
        "spec": {"config": "{\"cniVersion\":\"0.3.1\",\"type\":\"bridge\",\"bridge\":\"mgmt-br\",\"vlan\":98,\"ipam\":{}}"}
    }))
    .expect("a NAD");
    nads.create(&PostParams::default(), &nad)
        .await
        .unwrap_or_else(|e| panic!("create NAD {name}: {e}"));
}

async fn create_vm(client: &Client, ns: &str, name: &str, nad: &str, mac: &str) {
    let vms: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &e2e::vm_resource());
    let vm: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "annotations": {
            "harvesterhci.io/mac-address": format!("{{\"nic-1\":\"{mac}\"}}")}},
        "spec": {"runStrategy": "Halted", "template": {"spec": {
            "domain": {"devices": {"interfaces": [{"name": "nic-1", "bridge": {}}]}},
            "networks": [{"name": "nic-1", "multus": {"networkName": format!("{ns}/{nad}")}}]}}}
    }))
    .expect("a VM");
    vms.create(&PostParams::default(), &vm)
        .await
        .unwrap_or_else(|e| panic!("create VM {name}: {e}"));
}

async fn allocated_ip(cfgs: &Api<VirtualMachineNetworkConfig>, name: &str) -> String {
    e2e::eventually(
        &format!("vmnetcfg {name} to be Allocated"),
        WAIT,
        || async {
            let cfg = cfgs.get_opt(name).await.ok().flatten()?;
            let entry = cfg.status?.network_configs.into_iter().next()?;
            (entry.state == "Allocated").then_some(entry.allocated_ip_address)
        },
    )
    .await
}

/// A real udhcpc asks the agent, which watches the pool with the agent ServiceAccount's token.
async fn lease_from_agent(client: Client, ns: &str, pool: &str) -> String {
    let udhcpc = netns::find("udhcpc").expect("udhcpc was checked before");
    let t = Topology::create("vmdhcp-e2e-sys")
        .expect("network namespaces")
        .quiet();
    t.set_client_mac(VM_MAC).expect("client MAC");
    let socket = t
        .bind_server(&dhcp_server::SocketConfig::new().interface(SERVER_IF))
        .expect("DHCP socket in the server namespace");
    let agent = vmdhcp_agent::Agent::new(
        vmdhcp_agent::Source::Kube {
            client,
            namespace: ns.to_owned(),
            name: pool.to_owned(),
        },
        vmdhcp_agent::Dhcp::Socket(socket),
    );
    let served = agent.served.clone();
    let stop = CancellationToken::new();
    let running = tokio::spawn(agent.run(stop.clone()));
    tokio::time::timeout(WAIT, served.configured())
        .await
        .expect("the agent synced its IPPool with the agent ServiceAccount's token");
    let got = e2e::eventually("a lease for the VM's MAC", WAIT, || async {
        vmdhcp_examples::client::udhcpc_once(&t, &udhcpc).await.ok()
    })
    .await;
    stop.cancel();
    running
        .await
        .expect("agent task")
        .expect("the agent ran cleanly");
    got.address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_three_programs_work_with_exactly_the_charts_rbac() {
    let Some(cluster) = e2e::cluster().await else {
        return;
    };
    if !e2e::require_root("network namespaces for the agent and udhcpc") {
        return;
    }
    if let Some(reason) = netns::unsupported() {
        return e2e::unavailable(&reason);
    }
    if netns::find("udhcpc").is_none() {
        return e2e::unavailable("udhcpc (busybox) is not installed");
    }
    let client = cluster.client.clone();
    e2e::ensure_kubevirt_and_multus(&client).await;
    let dir = std::env::temp_dir().join(e2e::unique_name("vmdhcp-e2e-chart"));
    std::fs::create_dir_all(&dir).expect("a scratch directory");

    let admin = client.clone();
    let scratch = dir.clone();
    e2e::with_temp_ns(&admin, "vmdhcp-e2e-chart", |ns| async move {
        let dir = scratch;
        let docs = chart_docs(&ns);
        let cluster_scoped = apply_rbac(&client, &docs).await;
        let programs = [
            start_webhook(&cluster, &docs, &ns, &dir).await,
            start_controller(&cluster, &docs, &ns, &dir).await,
        ];

        let result = std::panic::AssertUnwindSafe(async {
            await_webhook(&client, &ns).await;
            create_nad(&client, &ns, "net-a").await;
            let pools: Api<IPPool> = Api::namespaced(client.clone(), &ns);
            pools
                .create(&PostParams::default(), &pool(&ns, "net-a", "net-a"))
                .await
                .expect("create the IPPool");
            let stored = pools.get("net-a").await.expect("the pool");
            assert_eq!(
                stored.spec.ipv4_config.server_ip, "10.98.0.1",
                "the mutator chose the first address after the network address (the agent's \
                 end of the veth pair)"
            );

            create_vm(&client, &ns, "vm-a", "net-a", VM_MAC).await;
            let cfgs: Api<VirtualMachineNetworkConfig> = Api::namespaced(client.clone(), &ns);
            let ip = allocated_ip(&cfgs, "vm-a").await;
            let pool_status = pools.get("net-a").await.expect("the pool").status;
            let allocated = pool_status
                .and_then(|s| s.ipv4)
                .map(|v4| v4.allocated)
                .unwrap_or_default();
            assert_eq!(allocated.get(&ip).map(String::as_str), Some(VM_MAC));

            // The agent Pod, as the controller's ServiceAccount may create it, with the
            // agent ServiceAccount.
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let agent_pod = format!("{ns}-net-a-agent");
            let pod = e2e::eventually("the agent Pod", WAIT, || async {
                pods.get_opt(&agent_pod).await.ok().flatten()
            })
            .await;
            assert_eq!(
                pod.spec.and_then(|s| s.service_account_name).as_deref(),
                Some(AGENT_SA)
            );
            // Events, written with the controller's token.
            let events: Api<Event> = Api::namespaced(client.clone(), &ns);
            e2e::eventually("an Event from the controller", WAIT, || async {
                let list = events.list(&ListParams::default()).await.ok()?;
                list.items
                    .iter()
                    .any(|e| {
                        e.reporting_controller
                            .as_deref()
                            .is_some_and(|c| !c.is_empty())
                    })
                    .then_some(())
            })
            .await;

            let agent_kubeconfig = e2e::service_account_kubeconfig(
                &cluster,
                &ns,
                AGENT_SA,
                &dir.join("agent.kubeconfig"),
            )
            .await
            .expect("agent token");
            let agent_client = e2e::client_for(&agent_kubeconfig)
                .await
                .expect("agent client");
            assert_eq!(lease_from_agent(agent_client, &ns, "net-a").await, ip);

            // Deleting the VM: the garbage collector deletes the vmnetcfg, the controller's
            // finalizer releases the address.
            let vms: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &e2e::vm_resource());
            vms.delete("vm-a", &DeleteParams::foreground())
                .await
                .expect("delete the VM");
            e2e::eventually(
                "the vmnetcfg to be collected and released",
                WAIT,
                || async { cfgs.get_opt("vm-a").await.ok()?.is_none().then_some(()) },
            )
            .await;
            e2e::eventually("the address to be released", WAIT, || async {
                let v4 = pools.get("net-a").await.ok()?.status?.ipv4?;
                (!v4.allocated.contains_key(&ip)).then_some(())
            })
            .await;

            // Deleting the pool: the validator allows it (nothing uses it), the controller
            // deletes the agent Pod and lets the pool go.
            pools
                .delete("net-a", &DeleteParams::default())
                .await
                .expect("delete the IPPool");
            e2e::eventually("the IPPool to be gone", WAIT, || async {
                pools.get_opt("net-a").await.ok()?.is_none().then_some(())
            })
            .await;
            e2e::eventually("the agent Pod to be deleted", WAIT, || async {
                let pod = pods.get_opt(&agent_pod).await.ok()?;
                pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
                    .then_some(())
            })
            .await;
        })
        .catch_unwind()
        .await;

        teardown(&client, &ns, programs, cluster_scoped).await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Removes what outlives the namespace: the webhook configurations first (a `Fail` validator
/// left behind would refuse every later IPPool write of the cluster), then, while the
/// controller still runs to release them, the namespace's IPPools; then the programs stop and
/// the chart's cluster-scoped RBAC goes.
async fn teardown(
    client: &Client,
    ns: &str,
    programs: impl IntoIterator<Item = Program>,
    cluster_scoped: Vec<(ApiResource, String)>,
) {
    remove_webhook_configurations(client).await;
    let pools: Api<IPPool> = Api::namespaced(client.clone(), ns);
    let _ = pools
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while pools
            .list(&ListParams::default())
            .await
            .is_ok_and(|l| !l.items.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    for program in programs {
        program.stop().await;
    }
    for (ar, name) in cluster_scoped {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
}

/// The webhook registers cluster-scoped configurations named after itself.
async fn remove_webhook_configurations(client: &Client) {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    let name = "harvester-vm-dhcp-controller-webhook";
    let _ = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
    let _ = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// While the webhook is down (stopped, its configurations still registered), the controller's
/// bookkeeping goes on: a deleted VM's vmnetcfg loses its finalizer and its address, a VM whose
/// NIC changed gets its vmnetcfg rewritten and a new address, and every status is written;
/// user input the validator must judge is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controllers_bookkeeping_goes_on_while_the_webhook_is_down() {
    let Some(cluster) = e2e::cluster().await else {
        return;
    };
    let client = cluster.client.clone();
    e2e::ensure_kubevirt_and_multus(&client).await;
    let dir = std::env::temp_dir().join(e2e::unique_name("vmdhcp-e2e-whdown"));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let admin = client.clone();
    let scratch = dir.clone();
    e2e::with_temp_ns(&admin, "vmdhcp-e2e-whdown", |ns| async move {
        let dir = scratch;
        let docs = chart_docs(&ns);
        let cluster_scoped = apply_rbac(&client, &docs).await;
        let mut webhook = Some(start_webhook(&cluster, &docs, &ns, &dir).await);
        let controller = start_controller(&cluster, &docs, &ns, &dir).await;

        let result = std::panic::AssertUnwindSafe(async {
            await_webhook(&client, &ns).await;
            create_nad(&client, &ns, "net-a").await;
            let pools: Api<IPPool> = Api::namespaced(client.clone(), &ns);
            pools
                .create(&PostParams::default(), &pool(&ns, "net-a", "net-a"))
                .await
                .expect("create the IPPool");
            create_vm(&client, &ns, "vm-a", "net-a", VM_MAC).await;
            create_vm(&client, &ns, "vm-b", "net-a", "02:00:00:98:00:02").await;
            let cfgs: Api<VirtualMachineNetworkConfig> = Api::namespaced(client.clone(), &ns);
            let ip_a = allocated_ip(&cfgs, "vm-a").await;
            let ip_b = allocated_ip(&cfgs, "vm-b").await;

            webhook.take().expect("the webhook runs").stop().await;

            // Fail closed: a new pool (complete, since the mutator is skipped while down) is
            // judged by nobody, so it is refused.
            let mut complete = pool(&ns, "net-b", "missing");
            complete.spec.ipv4_config.server_ip = "10.98.0.1".into();
            complete.spec.ipv4_config.pool.start = "10.98.0.10".into();
            complete.spec.ipv4_config.pool.end = "10.98.0.20".into();
            let refused = pools.create(&PostParams::default(), &complete).await;
            match refused {
                Err(kube::Error::Api(e)) => assert!(
                    e.message.contains("failed calling webhook"),
                    "refused for the unreachable webhook, not for another reason: {e:?}"
                ),
                other => panic!("a pool was accepted while its validator is down: {other:?}"),
            }

            // A deleted VM: the garbage collector deletes its vmnetcfg, the controller
            // releases the address (a status write) and removes its finalizer (an update).
            let vms: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &e2e::vm_resource());
            vms.delete("vm-a", &DeleteParams::background())
                .await
                .expect("delete vm-a");
            e2e::eventually("vm-a's vmnetcfg to be released and gone", WAIT, || async {
                cfgs.get_opt("vm-a").await.ok()?.is_none().then_some(())
            })
            .await;
            e2e::eventually("vm-a's address to be released", WAIT, || async {
                let v4 = pools.get("net-a").await.ok()?.status?.ipv4?;
                (!v4.allocated.contains_key(&ip_a)).then_some(())
            })
            .await;

            // A VM whose NIC got another MAC: the controller rewrites the vmnetcfg spec and
            // moves the allocation to the new MAC.
            let new_mac = "02:00:00:98:00:03";
            vms.patch(
                "vm-b",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "harvesterhci.io/mac-address": format!("{{\"nic-1\":\"{new_mac}\"}}")}}})),
            )
            .await
            .expect("change vm-b's MAC");
            e2e::eventually("vm-b's vmnetcfg to follow its new MAC", WAIT, || async {
                let cfg = cfgs.get_opt("vm-b").await.ok().flatten()?;
                let entry = cfg.status?.network_configs.into_iter().next()?;
                (entry.mac_address == new_mac && entry.state == "Allocated").then_some(())
            })
            .await;
            let v4 = pools
                .get("net-a")
                .await
                .expect("the pool")
                .status
                .and_then(|s| s.ipv4)
                .expect("an ipv4 status");
            assert!(
                v4.allocated.values().any(|m| m == new_mac),
                "the new MAC holds an address: {:?}",
                v4.allocated
            );
            assert!(
                !v4.allocated.values().any(|m| m == "02:00:00:98:00:02"),
                "the old MAC's address {ip_b} is released: {:?}",
                v4.allocated
            );
        })
        .catch_unwind()
        .await;

        teardown(
            &client,
            &ns,
            webhook.into_iter().chain([controller]),
            cluster_scoped,
        )
        .await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An agent serving `pool` in `ns` with the agent ServiceAccount's token, its DHCP socket in
/// `t`'s server namespace, running until the token returned is cancelled.
async fn start_agent(
    cluster: &Cluster,
    ns: &str,
    pool: &str,
    dir: &Path,
    t: &Topology,
) -> (
    std::sync::Arc<vmdhcp_agent::state::Served>,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), vmdhcp_agent::Error>>,
) {
    let kubeconfig =
        e2e::service_account_kubeconfig(cluster, ns, AGENT_SA, &dir.join("agent.kubeconfig"))
            .await
            .expect("agent token");
    let client = e2e::client_for(&kubeconfig).await.expect("agent client");
    let socket = t
        .bind_server(&dhcp_server::SocketConfig::new().interface(SERVER_IF))
        .expect("DHCP socket in the server namespace");
    let mut agent = vmdhcp_agent::Agent::new(
        vmdhcp_agent::Source::Kube {
            client,
            namespace: ns.to_owned(),
            name: pool.to_owned(),
        },
        vmdhcp_agent::Dhcp::Socket(socket),
    );
    agent.name = format!("{ns}-{pool}-agent");
    let served = agent.served.clone();
    let stop = CancellationToken::new();
    let running = tokio::spawn(agent.run(stop.clone()));
    tokio::time::timeout(WAIT, served.configured())
        .await
        .expect("the agent synced its IPPool with the agent ServiceAccount's token");
    (served, stop, running)
}

fn v4_status(pool: IPPool) -> Option<vmdhcp_api::ippool::IPv4Status> {
    pool.status?.ipv4
}

/// A VM NIC gets address X; the real (built-in) client declines X as in use by another host.
/// The agent stops offering X and posts a Warning Event on the pool; the controller marks X
/// `CONFLICT` in the pool's status, moves the NIC to Y, tells the vmnetcfg and marks the
/// report handled; the client then gets Y, never X again. Once the operator removes the
/// mark, X is free again. Each program runs with exactly the chart's RBAC.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_address_moves_the_vm_and_stays_out_of_use_until_cleared() {
    let Some(cluster) = e2e::cluster().await else {
        return;
    };
    if !e2e::require_root("network namespaces for the agent and the DHCP client") {
        return;
    }
    if let Some(reason) = netns::unsupported() {
        return e2e::unavailable(&reason);
    }
    let client = cluster.client.clone();
    e2e::ensure_kubevirt_and_multus(&client).await;
    let dir = std::env::temp_dir().join(e2e::unique_name("vmdhcp-e2e-conflict"));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let admin = client.clone();
    let scratch = dir.clone();
    e2e::with_temp_ns(&admin, "vmdhcp-e2e-conflict", |ns| async move {
        let dir = scratch;
        let docs = chart_docs(&ns);
        let cluster_scoped = apply_rbac(&client, &docs).await;
        let programs = [
            start_webhook(&cluster, &docs, &ns, &dir).await,
            start_controller(&cluster, &docs, &ns, &dir).await,
        ];
        let t = Topology::create("vmdhcp-e2e-conflict")
            .expect("network namespaces")
            .quiet();
        t.set_client_mac(VM_MAC).expect("client MAC");
        let mut agent = None;

        let result = std::panic::AssertUnwindSafe(async {
            await_webhook(&client, &ns).await;
            create_nad(&client, &ns, "net-c").await;
            let pools: Api<IPPool> = Api::namespaced(client.clone(), &ns);
            pools
                .create(&PostParams::default(), &pool(&ns, "net-c", "net-c"))
                .await
                .expect("create the IPPool");
            create_vm(&client, &ns, "vm-c", "net-c", VM_MAC).await;
            let cfgs: Api<VirtualMachineNetworkConfig> = Api::namespaced(client.clone(), &ns);
            let x = allocated_ip(&cfgs, "vm-c").await;

            let (served, stop, running) = start_agent(&cluster, &ns, "net-c", &dir, &t).await;
            agent = Some((stop, running));
            let got = e2e::eventually("the built-in client's lease", WAIT, || async {
                vmdhcp_examples::client::builtin_client(&t).await.ok()
            })
            .await;
            assert_eq!(got.address, x, "the client got the VM's address");

            // Another host answers for X: the client declines it.
            vmdhcp_examples::client::builtin_decline(&t, &got)
                .await
                .expect("send the DECLINE");

            // The agent's report: a Warning on the pool naming the address and the MAC.
            let events: Api<Event> = Api::namespaced(client.clone(), &ns);
            let report = e2e::eventually("the agent's AddressConflict Event", WAIT, || async {
                let list = events
                    .list(&ListParams::default().fields("reason=AddressConflict"))
                    .await
                    .ok()?;
                list.items.into_iter().find(|e| {
                    e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("IPPool")
                })
            })
            .await;
            assert_eq!(report.type_.as_deref(), Some("Warning"));
            assert_eq!(report.action.as_deref(), Some("Decline"));
            assert_eq!(
                report.reporting_controller.as_deref(),
                Some("vm-dhcp-agent")
            );
            let note = report.note.clone().unwrap_or_default();
            assert!(note.contains(&x) && note.contains(VM_MAC), "{note}");
            let annotations = report.metadata.annotations.clone().unwrap_or_default();
            assert_eq!(
                annotations
                    .get("network.harvesterhci.io/conflict-ip")
                    .map(String::as_str),
                Some(x.as_str())
            );
            assert_eq!(
                annotations
                    .get("network.harvesterhci.io/conflict-mac")
                    .map(String::as_str),
                Some(VM_MAC)
            );

            // The controller: X is the CONFLICT mark, the NIC moves to Y.
            e2e::eventually("X marked CONFLICT in the pool's status", WAIT, || async {
                let v4 = v4_status(pools.get("net-c").await.ok()?)?;
                (v4.allocated.get(&x).map(String::as_str) == Some("CONFLICT")).then_some(())
            })
            .await;
            let y = e2e::eventually("the vmnetcfg to move to another address", WAIT, || async {
                let cfg = cfgs.get_opt("vm-c").await.ok().flatten()?;
                let entry = cfg.status?.network_configs.into_iter().next()?;
                (entry.state == "Allocated" && entry.allocated_ip_address != x)
                    .then_some(entry.allocated_ip_address)
            })
            .await;
            let v4 = v4_status(pools.get("net-c").await.expect("the pool")).expect("ipv4");
            assert_eq!(v4.allocated.get(&y).map(String::as_str), Some(VM_MAC));
            assert_eq!(
                v4.allocated.get(&x).map(String::as_str),
                Some("CONFLICT"),
                "X stays out of use, held by no MAC"
            );
            let handled = e2e::eventually("the report annotated as handled", WAIT, || async {
                let e = events.get(&report.name_any()).await.ok()?;
                e.metadata
                    .annotations?
                    .get("network.harvesterhci.io/conflict-handled")
                    .cloned()
            })
            .await;
            assert!(handled.contains(&y), "{handled}");
            let warning = e2e::eventually("the Warning on the vmnetcfg", WAIT, || async {
                let list = events
                    .list(&ListParams::default().fields("reason=AddressConflict"))
                    .await
                    .ok()?;
                list.items.into_iter().find(|e| {
                    e.regarding.as_ref().and_then(|r| r.kind.as_deref())
                        == Some("VirtualMachineNetworkConfig")
                })
            })
            .await;
            let note = warning.note.unwrap_or_default();
            assert!(
                note.contains(&x) && note.contains(&y) && note.contains(VM_MAC),
                "{note}"
            );

            // The client gets Y, and X is never offered again.
            let got = e2e::eventually("a lease of the new address", WAIT, || async {
                let got = vmdhcp_examples::client::builtin_client(&t).await.ok()?;
                assert_ne!(got.address, x, "the declined address was offered again");
                Some(got)
            })
            .await;
            assert_eq!(got.address, y);
            let mac: dhcp_server::MacAddr = VM_MAC.parse().expect("MAC");
            assert_eq!(
                served.leases().get(mac).map(|l| l.addr().to_string()),
                Some(y.clone())
            );
            assert!(
                served.leases().conflicts().is_empty(),
                "the agent lifted its mark once the pool moved the MAC"
            );
            assert!(
                !served.table().iter().any(|(_, ip)| ip.to_string() == x),
                "no lease for X"
            );

            // The operator clears the mark: X counts as free again.
            let available = v4.available;
            let path = format!("/status/ipv4/allocated/{x}");
            let remove: json_patch::Patch =
                serde_json::from_value(json!([{"op": "remove", "path": path}]))
                    .expect("a JSON patch");
            pools
                .patch_status("net-c", &PatchParams::default(), &Patch::Json::<()>(remove))
                .await
                .expect("remove the CONFLICT mark");
            e2e::eventually("X to count as available again", WAIT, || async {
                let v4 = v4_status(pools.get("net-c").await.ok()?)?;
                (!v4.allocated.contains_key(&x) && v4.available == available + 1).then_some(())
            })
            .await;
            // The lowest free address again: the next VM gets it.
            create_vm(&client, &ns, "vm-d", "net-c", "02:00:00:98:00:04").await;
            assert_eq!(allocated_ip(&cfgs, "vm-d").await, x);
        })
        .catch_unwind()
        .await;

        if let Some((stop, running)) = agent {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
        }
        drop(t);
        teardown(&client, &ns, programs, cluster_scoped).await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
