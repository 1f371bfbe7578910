//! What the scenarios of `tests/e2e.rs` share: the controller in this process, the objects
//! they create, and reading what the controller wrote (as raw JSON, so that a comparison sees
//! every byte the API server stores, not what our types happen to keep).

pub mod go_objects;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
use vmdhcp_controller::cli::Args;
use vmdhcp_examples::e2e;

/// The agent service account the controller names by default (`--service-account-name`).
pub const AGENT_SA: &str = "vm-dhcp-controller-agent";
/// The agent image the controller runs with in these tests.
pub const IMAGE: &str = "ghcr.io/vmdhcp/vmdhcp-agent:e2e";

/// The controller's logs on the test's output (`RUST_LOG`, else warnings and its info).
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,vmdhcp_controller=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A free port on the loopback interface for a controller's HTTP endpoints (so that its
/// `/metrics` can be read; `127.0.0.1:0` would hide the port).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// The controller, running in this process as `run::run` with its own client from
/// `--kubeconfig`.
pub struct Controller {
    stop: CancellationToken,
    task: JoinHandle<Result<(), vmdhcp_controller::Error>>,
    /// Its HTTP endpoints.
    pub http: SocketAddr,
}

impl Controller {
    /// Starts it without leader election, agents in `agents`, plus `extra` flags.
    pub fn start(kubeconfig: &Path, agents: &str, extra: &[&str]) -> Self {
        let mut line = vec!["--no-leader-election"];
        line.extend_from_slice(extra);
        Self::start_with(kubeconfig, agents, &line)
    }

    /// Starts it with exactly the flags given (plus kubeconfig, agent namespace and image).
    pub fn start_with(kubeconfig: &Path, agents: &str, flags: &[&str]) -> Self {
        logs();
        let http = free_port();
        let bind = http.to_string();
        let kubeconfig = kubeconfig.to_str().expect("a UTF-8 kubeconfig path");
        let mut line = vec![
            "vmdhcp-controller",
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            agents,
            "--image",
            IMAGE,
            "--metrics-bind",
            &bind,
        ];
        line.extend_from_slice(flags);
        let args = Args::try_parse_from(line).expect("controller arguments");
        let stop = CancellationToken::new();
        let task = tokio::spawn(vmdhcp_controller::run::run(args, stop.clone()));
        Self { stop, task, http }
    }

    /// Cancels it and waits for it to end cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the controller stops within 30 s of its token")
            .expect("controller task")
            .expect("the controller ran cleanly");
    }

    /// `GET path` on its HTTP endpoints: the body, `None` while it does not answer.
    pub async fn get(&self, path: &str) -> Option<String> {
        let mut stream = tokio::net::TcpStream::connect(self.http).await.ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
    }

    /// Waits until its gauges show that it has reconciled every one of `pools` and
    /// `vmnetcfgs` (`ns/name`): each reconcile sets its series before it decides whether to
    /// write, so a status not written by then is not going to be written for that state.
    pub async fn reconciled(&self, pools: &[String], vmnetcfgs: &[String], within: Duration) {
        e2e::eventually(
            "the controller's gauges for every pool and vmnetcfg",
            within,
            || async {
                let metrics = self.get("/metrics").await?;
                let all = pools
                    .iter()
                    .all(|p| metrics.contains(&format!("ippool=\"{p}\"")))
                    && vmnetcfgs
                        .iter()
                        .all(|c| metrics.contains(&format!("vmnetcfg=\"{c}\"")));
                all.then_some(())
            },
        )
        .await;
    }
}

/// The stub CRDs first (the garbage collector learns new kinds only at its next discovery,
/// every 30 s, so they are installed before anything), then vmdhcp's.
pub async fn prepare(client: &Client) {
    e2e::ensure_kubevirt_and_multus(client).await;
    e2e::apply_vmdhcp_crds(client).await;
}

/// The IPPool resource, for raw reads.
pub fn ippool_resource() -> ApiResource {
    ApiResource::erase::<IPPool>(&())
}

/// The vmnetcfg resource, for raw reads.
pub fn vmnetcfg_resource() -> ApiResource {
    ApiResource::erase::<VirtualMachineNetworkConfig>(&())
}

/// A NAD as Harvester creates it for a VM network on cluster network `mgmt`.
pub async fn create_nad(client: &Client, ns: &str, name: &str) {
    let nads: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &e2e::nad_resource());
    let nad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "labels": {"network.harvesterhci.io/clusternetwork": "mgmt"}},
        "spec": {"config": "{\"cniVersion\":\"0.3.1\",\"type\":\"bridge\",\"bridge\":\"mgmt-br\",\"ipam\":{}}"}
    }))
    .expect("a NAD");
    nads.create(&PostParams::default(), &nad)
        .await
        .unwrap_or_else(|e| panic!("create NAD {ns}/{name}: {e}"));
}

/// An IPPool on NAD `ns/name`: `cidr`, server `.2`, router `.1`, range `first`..`last`,
/// excluding `exclude`.
pub async fn create_pool(
    client: &Client,
    ns: &str,
    name: &str,
    prefix: &str,
    (first, last): (u8, u8),
    exclude: &[u8],
) {
    let pools: Api<IPPool> = Api::namespaced(client.clone(), ns);
    let exclude: Vec<String> = exclude.iter().map(|h| format!("{prefix}.{h}")).collect();
    let pool: IPPool = serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"networkName": format!("{ns}/{name}"), "ipv4Config": {
            "cidr": format!("{prefix}.0/24"), "serverIP": format!("{prefix}.2"), "router": format!("{prefix}.1"),
            "pool": {"start": format!("{prefix}.{first}"), "end": format!("{prefix}.{last}"), "exclude": exclude}}}
    }))
    .expect("an IPPool");
    pools
        .create(&PostParams::default(), &pool)
        .await
        .unwrap_or_else(|e| panic!("create IPPool {ns}/{name}: {e}"));
}

/// A Harvester ≥ 1.6 VM: its Multus NICs' MACs in the `harvesterhci.io/mac-address`
/// annotation, plus a pod-network NIC. `nics`: (NIC name, network, MAC).
pub fn vm(name: &str, nics: &[(&str, &str, &str)]) -> DynamicObject {
    let macs: BTreeMap<&str, &str> = nics.iter().map(|(nic, _, mac)| (*nic, *mac)).collect();
    let mut interfaces = vec![json!({"name": "default", "masquerade": {}})];
    let mut networks = vec![json!({"name": "default", "pod": {}})];
    for (nic, network, _) in nics {
        interfaces.push(json!({"name": nic, "bridge": {}}));
        networks.push(json!({"name": nic, "multus": {"networkName": network}}));
    }
    serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "annotations": {
            "harvesterhci.io/mac-address": serde_json::to_string(&macs).expect("JSON")}},
        "spec": {"runStrategy": "Halted", "template": {"spec": {
            "domain": {"devices": {"interfaces": interfaces}},
            "networks": networks}}}
    }))
    .expect("a VM")
}

/// Creates `vm` in `ns`; returns it as stored.
pub async fn create_vm(client: &Client, ns: &str, vm: &DynamicObject) -> DynamicObject {
    let vms: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &e2e::vm_resource());
    vms.create(&PostParams::default(), vm)
        .await
        .unwrap_or_else(|e| panic!("create VM {ns}/{}: {e}", vm.name_any()))
}

/// The MAC of VM number `i` of a batch.
pub fn batch_mac(i: usize) -> String {
    format!("52:54:00:10:{:02x}:{:02x}", i / 256, i % 256)
}

/// Creates the agent service account in `ns`.
pub async fn create_agent_sa(client: &Client, ns: &str) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": AGENT_SA}})).expect("a ServiceAccount");
    sas.create(&PostParams::default(), &sa)
        .await
        .unwrap_or_else(|e| panic!("create ServiceAccount {ns}/{AGENT_SA}: {e}"));
}

/// An object as the API server stores it, or `None`.
pub async fn raw(client: &Client, ns: &str, ar: &ApiResource, name: &str) -> Option<DynamicObject> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    api.get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("get {} {ns}/{name}: {e}", ar.kind))
}

/// The IPPool `ns/name` as stored.
pub async fn raw_pool(client: &Client, ns: &str, name: &str) -> DynamicObject {
    raw(client, ns, &ippool_resource(), name)
        .await
        .unwrap_or_else(|| panic!("IPPool {ns}/{name} exists"))
}

/// The serialised status and the `resourceVersion` of an object: what must not change when
/// nothing changed.
pub fn fingerprint(obj: &DynamicObject) -> (String, String) {
    (
        serde_json::to_string(&obj.data["status"]).expect("JSON"),
        obj.resource_version().unwrap_or_default(),
    )
}

/// `(status, reason, message)` of condition `type_` in a raw status.
pub fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("status"), s("reason"), s("message"))
        })
}

/// A condition that is `True` with neither reason nor message.
pub fn is_true() -> (String, String, String) {
    ("True".into(), String::new(), String::new())
}

/// A condition that failed with `message`.
pub fn failed(message: &str) -> (String, String, String) {
    ("False".into(), "Error".into(), message.into())
}

/// The address of the vmnetcfg `ns/name` once its `Allocated` condition is true and every
/// entry is `Allocated`: `(MAC, IP)` per entry.
pub async fn allocated(client: &Client, ns: &str, name: &str) -> Option<Vec<(String, String)>> {
    let cfg = raw(client, ns, &vmnetcfg_resource(), name).await?;
    let status = &cfg.data["status"];
    if condition(status, "Allocated")? != is_true() {
        return None;
    }
    let entries = status["networkConfigs"].as_array()?;
    let out: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e["state"] == "Allocated")
        .map(|e| {
            (
                e["macAddress"].as_str().unwrap_or_default().to_owned(),
                e["allocatedIPAddress"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    (!out.is_empty() && out.len() == entries.len()).then_some(out)
}

/// `status.ipv4.allocated` of a raw IPPool, marks included.
pub fn allocations(pool: &DynamicObject) -> BTreeMap<String, String> {
    pool.data["status"]["ipv4"]["allocated"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The IP → MAC entries of a raw IPPool, marks left out.
pub fn leases(pool: &DynamicObject) -> BTreeMap<String, String> {
    allocations(pool)
        .into_iter()
        .filter(|(_, v)| v != "EXCLUDED" && v != "RESERVED")
        .collect()
}

/// Events about `kind ns/name`, as `(type, reason, note)`.
pub async fn events_about(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> Vec<(String, String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list events in {ns}: {e}"))
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

/// The agent Pod `ns/name`, when it exists.
pub async fn agent_pod(client: &Client, ns: &str, name: &str) -> Option<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("get pod {ns}/{name}: {e}"))
}

/// Where `want` is not contained in `got` (objects: every key of `want` with a contained
/// value; everything else equal): the path of the first difference.
pub fn not_contained(want: &Value, got: &Value, path: &str) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().find_map(|(k, v)| {
            let here = format!("{path}.{k}");
            match g.get(k) {
                Some(gv) => not_contained(v, gv, &here),
                None => Some(format!("{here} missing")),
            }
        }),
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (wv, gv))| not_contained(wv, gv, &format!("{path}[{i}]"))),
        _ if want == got => None,
        _ => Some(format!("{path}: want {want}, got {got}")),
    }
}

/// Every JSON path where `a` and `b` differ (leaves; arrays of conditions by their type).
pub fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y))
            if x.iter().chain(y).all(|c| c.get("type").is_some()) =>
        {
            let types: std::collections::BTreeSet<&str> = x
                .iter()
                .chain(y)
                .filter_map(|c| c["type"].as_str())
                .collect();
            for t in types {
                let find = |v: &Vec<Value>| v.iter().find(|c| c["type"] == t).cloned();
                differences(
                    &find(x).unwrap_or(Value::Null),
                    &find(y).unwrap_or(Value::Null),
                    &format!("{path}[{t}]"),
                    out,
                );
            }
        }
        _ if a == b => {}
        _ => out.push(path.to_owned()),
    }
}

/// Deletes the VMs, vmnetcfgs and IPPools of `ns` while the controller still runs (its
/// finalizers must release them, or the namespace never goes), and waits until they are gone.
pub async fn teardown(client: &Client, ns: &str) {
    for ar in [e2e::vm_resource(), vmnetcfg_resource(), ippool_resource()] {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let _ = api
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
    }
    for ar in [vmnetcfg_resource(), ippool_resource()] {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        e2e::eventually(
            &format!("every {} of {ns} to be released and gone", ar.kind),
            Duration::from_secs(60),
            || async {
                api.list(&ListParams::default())
                    .await
                    .ok()
                    .filter(|l| l.items.is_empty())
                    .map(|_| ())
            },
        )
        .await;
    }
}

/// A directory removed when dropped, also when the test panics (unless `VMDHCP_E2E_KEEP`).
pub struct ScratchDir(pub std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os(e2e::KEEP_ENV).is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!("{}: keeping {}", e2e::KEEP_ENV, self.0.display());
        }
    }
}

/// Seconds since `t`, for the timings the scenarios print.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// The API server's `apiserver_request_total`, summed over response codes, by
/// `(verb, resource[/subresource])`; and the `409`s alone. What every client of the server
/// did, the controller included: a scenario compares two readings.
pub async fn api_requests(client: &Client) -> (Counts, Counts) {
    let text = client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("a request"),
        )
        .await
        .expect("the API server's /metrics");
    let (mut all, mut conflicts) = (BTreeMap::new(), BTreeMap::new());
    for line in text.lines() {
        let Some((labels, value)) = line
            .strip_prefix("apiserver_request_total{")
            .and_then(|rest| rest.rsplit_once("} "))
        else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let (resource, sub) = (label("resource"), label("subresource"));
        let what = if sub.is_empty() {
            resource
        } else {
            format!("{resource}/{sub}")
        };
        // Prometheus prints counters as floats; these are whole numbers.
        let n: u64 = value
            .trim()
            .parse::<f64>()
            .map_or(0, |v| format!("{v:.0}").parse().unwrap_or(0));
        *all.entry((label("verb"), what.clone())).or_insert(0) += n;
        if label("code") == "409" {
            *conflicts.entry((label("verb"), what)).or_insert(0) += n;
        }
    }
    (all, conflicts)
}

/// `later - earlier`, the entries that grew.
pub fn grew(earlier: &Counts, later: &Counts) -> Counts {
    later
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(earlier.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Requests by `(verb, resource[/subresource])`.
pub type Counts = BTreeMap<(String, String), u64>;
