//! Allocation at cluster scale: the controller's release binary, as a subprocess out of
//! cluster without leader election, against a real API server (the project's
//! `kube-test-server`: kube-apiserver with etcd, admission and RBAC, a fresh one per run, so
//! no run sees another's objects). Each run creates N VMs with one Multus NIC each on one
//! IPPool at once (stub VM and NAD CRDs, as the e2e suites use) and measures:
//!
//! - the time from the first create to every vmnetcfg `Allocated` (watched, not polled), and
//!   from the last create;
//! - API requests per allocation, from the API server's own `apiserver_request_total` (by
//!   verb, resource and subresource, every client of the server in the window counted, less
//!   the bench's own N VM creates);
//! - controller CPU per allocation (utime + stime of the controller process, from /proc), and
//!   the API server's (with etcd, one process) for where the time goes;
//! - duplicates: addresses given twice, and whether the pool's `allocated` and the vmnetcfgs
//!   agree.
//!
//! Every run is repeated with `--ippool-batch-size 1` (one status write per NIC) as the
//! baseline. Then the restart: a controller started over RESTART_VMS allocated vmnetcfgs,
//! from start to caches synced (`/readyz`) and to settled (its gauges list every vmnetcfg),
//! with the writes it made (must be 0) and the reads.
//!
//! Run (results and the exact command in docs/performance.md):
//!
//! ```sh
//! cargo bench -p vmdhcp-benches --bench controller_cluster
//! ```
//!
//! Environment: `VMDHCP_BENCH_VMS` (comma-separated VM counts, default `200,1000`),
//! `VMDHCP_BENCH_BATCH` (comma-separated `--ippool-batch-size` values, default `1,500`),
//! `VMDHCP_BENCH_RESTART_VMS` (default `10000`; `0` skips the restart measurement),
//! `VMDHCP_BENCH_EXTRA_ARGS` (more controller flags, space-separated),
//! `VMDHCP_KUBE_TEST_SERVER` (else `scripts/kube-test-server/build.sh` builds it),
//! `VMDHCP_CONTROLLER_BIN` (else `cargo build --release -p vmdhcp-controller` builds it).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

const NS: &str = "bench";
const POOL: &str = "net-bench";
const IMAGE: &str = "ghcr.io/vmdhcp/vmdhcp-agent:bench";
const AGENT_SA: &str = "vm-dhcp-controller-agent";
/// Concurrent VM creates (a burst, as a bulk import or a scale-out makes).
const CREATE_CONCURRENCY: usize = 64;
/// How long a run may take before it counts as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

fn gvk(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn vm_resource() -> ApiResource {
    gvk("kubevirt.io", "v1", "VirtualMachine", "virtualmachines")
}

fn nad_resource() -> ApiResource {
    gvk(
        "k8s.cni.cncf.io",
        "v1",
        "NetworkAttachmentDefinition",
        "network-attachment-definitions",
    )
}

fn pool_resource() -> ApiResource {
    gvk("network.harvesterhci.io", "v1alpha1", "IPPool", "ippools")
}

fn cfg_resource() -> ApiResource {
    gvk(
        "network.harvesterhci.io",
        "v1alpha1",
        "VirtualMachineNetworkConfig",
        "virtualmachinenetworkconfigs",
    )
}

fn env_list(name: &str, default: &str) -> Result<Vec<usize>> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| format!("{name}: {s:?} is not a number").into())
        })
        .collect()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The binary named by `var`, else what `build` prints or leaves at `built`.
fn binary(var: &str, build: &mut std::process::Command, built: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        // Relative to the workspace (cargo runs benches in the package's directory).
        return Ok(workspace_root().join(path));
    }
    eprintln!("{var} is not set: running {build:?}");
    let out = build.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(format!("{build:?} failed ({})", out.status).into());
    }
    Ok(built.unwrap_or_else(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())))
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .zip(fields.get(12).and_then(|s| s.parse::<f64>().ok()))
        .map(|(u, s)| u + s)
        .ok_or("no utime/stime in /proc stat")?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64);
    Ok(ticks / hz)
}

/// CPU seconds the whole machine spent busy so far (every core), for the noise column.
fn machine_busy_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().ok_or("empty /proc/stat")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    Ok(busy / 100.0)
}

/// A private kube-test-server in `dir`.
struct Server {
    child: tokio::process::Child,
    dir: PathBuf,
    client: Client,
    kubeconfig: PathBuf,
}

impl Server {
    async fn start(bin: &Path, dir: PathBuf) -> Result<Self> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut child = tokio::process::Command::new(bin)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?)
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(180), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("kube-test-server ready:") {
                    return Some(rest.to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| format!("kube-test-server in {} did not get ready", dir.display()))?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let kubeconfig = ready
            .split_whitespace()
            .find_map(|f| f.strip_prefix("kubeconfig="))
            .map(PathBuf::from)
            .ok_or("no kubeconfig in the ready line")?;
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        let client = Client::try_from(config)?;
        Ok(Self {
            child,
            dir,
            client,
            kubeconfig,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// `apiserver_request_total` by (verb, resource/subresource), and the 409s among them.
    async fn requests(&self) -> Result<Requests> {
        let text = self
            .client
            .request_text(http::Request::get("/metrics").body(Vec::new())?)
            .await?;
        let mut out = Requests::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default()
            };
            let n: f64 = value.trim().parse().unwrap_or(0.0);
            let (resource, sub) = (label("resource"), label("subresource"));
            if resource.is_empty() {
                continue;
            }
            let what = if sub.is_empty() {
                resource
            } else {
                format!("{resource}/{sub}")
            };
            *out.total.entry((label("verb"), what.clone())).or_default() += n;
            if label("code") == "409" {
                *out.conflicts.entry((label("verb"), what)).or_default() += n;
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Default, Clone)]
struct Requests {
    total: BTreeMap<(String, String), f64>,
    conflicts: BTreeMap<(String, String), f64>,
}

impl Requests {
    /// What happened between `self` and `later`; WATCH left out (counted when a watch ends).
    fn since(&self, later: &Self) -> Requests {
        let diff = |a: &BTreeMap<(String, String), f64>, b: &BTreeMap<(String, String), f64>| {
            b.iter()
                .filter(|((verb, _), _)| verb != "WATCH")
                .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v > 0.0)
                .collect()
        };
        Requests {
            total: diff(&self.total, &later.total),
            conflicts: diff(&self.conflicts, &later.conflicts),
        }
    }

    fn sum(&self, pred: impl Fn(&str, &str) -> bool) -> f64 {
        self.total
            .iter()
            .filter(|((verb, what), _)| pred(verb, what))
            .map(|(_, v)| v)
            .sum()
    }

    fn table(&self) -> String {
        self.total
            .iter()
            .map(|((verb, what), n)| {
                let c = self
                    .conflicts
                    .get(&(verb.clone(), what.clone()))
                    .map_or(String::new(), |c| format!(" ({c} × 409)"));
                format!("{verb} {what} {n}{c}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "POST" | "PUT" | "PATCH" | "DELETE" | "DELETECOLLECTION" | "APPLY"
    )
}

/// The controller binary running against `server`.
struct Controller {
    child: tokio::process::Child,
    http: std::net::SocketAddr,
}

impl Controller {
    fn start(bin: &Path, server: &Server, extra: &[String]) -> Result<Self> {
        let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = std::fs::File::create(server.dir.join("controller.log"))?;
        let child = tokio::process::Command::new(bin)
            .args([
                "--no-leader-election",
                "--namespace",
                NS,
                "--image",
                IMAGE,
                "--metrics-bind",
                &http.to_string(),
                "--kubeconfig",
            ])
            .arg(&server.kubeconfig)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        Ok(Self { child, http })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.http).await.ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((code, body))
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            )?;
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??;
        if !status.success() {
            return Err(format!("the controller ended with {status}").into());
        }
        Ok(())
    }
}

async fn create<K: serde::Serialize + Clone + std::fmt::Debug + serde::de::DeserializeOwned>(
    api: &Api<K>,
    obj: &K,
) -> Result<K> {
    Ok(api.create(&PostParams::default(), obj).await?)
}

/// CRDs (stubs for the kinds only stored, vmdhcp's own), the namespace, the agent's
/// ServiceAccount, the NAD and an IPPool over `cidr` whose range is all of it (less network,
/// broadcast, server and router).
async fn prepare(client: &Client, cidr: ipnet::Ipv4Net) -> Result<()> {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let mut names = Vec::new();
    for ar in [vm_resource(), nad_resource()] {
        let name = format!("{}.{}", ar.plural, ar.group);
        let crd = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"group": ar.group, "scope": "Namespaced",
                "names": {"kind": ar.kind, "plural": ar.plural, "singular": ar.kind.to_lowercase()},
                "versions": [{"name": ar.version, "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        }))?;
        create(&crds, &crd).await?;
        names.push(name);
    }
    for crd in vmdhcp_api::crd::crds()? {
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("vmdhcp-bench").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        names.push(name);
    }
    for name in names {
        tokio::time::timeout(
            Duration::from_secs(60),
            kube::runtime::wait::await_condition(
                crds.clone(),
                &name,
                kube::runtime::wait::conditions::is_crd_established(),
            ),
        )
        .await??;
    }
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    create(
        &nss,
        &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
    )
    .await?;
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), NS);
    create(
        &sas,
        &serde_json::from_value(json!({"metadata": {"name": AGENT_SA}}))?,
    )
    .await?;
    let nads: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &nad_resource());
    create(
        &nads,
        &serde_json::from_value(json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": POOL, "labels": {"network.harvesterhci.io/clusternetwork": "mgmt"}},
            "spec": {"config": "{\"cniVersion\":\"0.3.1\",\"type\":\"bridge\",\"bridge\":\"mgmt-br\",\"ipam\":{}}"}
        }))?,
    )
    .await?;
    let hosts: Vec<std::net::Ipv4Addr> = cidr.hosts().collect();
    let (router, server, first, last) = (
        hosts.first().ok_or("empty CIDR")?,
        hosts.get(1).ok_or("CIDR too small")?,
        hosts.get(2).ok_or("CIDR too small")?,
        hosts.last().ok_or("empty CIDR")?,
    );
    let pools: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &pool_resource());
    create(
        &pools,
        &serde_json::from_value(json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": POOL},
            "spec": {"networkName": format!("{NS}/{POOL}"), "ipv4Config": {
                "cidr": cidr.to_string(), "serverIP": server.to_string(), "router": router.to_string(),
                "pool": {"start": first.to_string(), "end": last.to_string()}}}
        }))?,
    )
    .await?;
    Ok(())
}

fn mac(i: usize) -> String {
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// A Harvester ≥ 1.6 VM with one Multus NIC (MAC in the annotation) and the pod network.
fn vm(i: usize) -> Result<DynamicObject> {
    let name = format!("vm-{i:05}");
    let macs = json!({"nic-1": mac(i)}).to_string();
    Ok(serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "annotations": {"harvesterhci.io/mac-address": macs}},
        "spec": {"runStrategy": "Halted", "template": {"spec": {
            "domain": {"devices": {"interfaces": [
                {"name": "default", "masquerade": {}}, {"name": "nic-1", "bridge": {}}]}},
            "networks": [{"name": "default", "pod": {}},
                {"name": "nic-1", "multus": {"networkName": format!("{NS}/{POOL}")}}]}}}
    }))?)
}

/// `(MAC, IP)` of a vmnetcfg whose `Allocated` condition is true and whose every entry is
/// allocated.
fn allocated(cfg: &DynamicObject) -> Option<(String, String)> {
    let status = &cfg.data["status"];
    let ok = status["conditions"]
        .as_array()?
        .iter()
        .any(|c| c["type"] == "Allocated" && c["status"] == "True");
    let entries = status["networkConfigs"].as_array()?;
    let e = entries.first()?;
    (ok && entries.len() == 1 && e["state"] == "Allocated").then(|| {
        (
            e["macAddress"].as_str().unwrap_or_default().to_owned(),
            e["allocatedIPAddress"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    })
}

async fn wait_for<F, Fut, T>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pool_ready(client: &Client) -> Result<()> {
    let pools: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &pool_resource());
    wait_for(
        "the pool to be CacheReady",
        Duration::from_secs(60),
        || async {
            let pool = pools.get(POOL).await.ok()?;
            pool.data["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "CacheReady" && c["status"] == "True")
                .then_some(())
        },
    )
    .await
}

/// One fill: what it measured.
struct Fill {
    vms: usize,
    batch: usize,
    created_in: f64,
    allocated_after_first: f64,
    allocated_after_last: f64,
    requests: Requests,
    controller_cpu: f64,
    server_cpu: f64,
    machine_busy: f64,
    bench_cpu: f64,
    pool_writes: f64,
    duplicates: usize,
    agree: bool,
}

/// Creates `vms` VMs at once and waits for all of them to be allocated; checks that no
/// address was given twice and that the pool's `allocated` and the vmnetcfgs agree.
async fn fill(server: &Server, controller: &Controller, vms: usize, batch: usize) -> Result<Fill> {
    let client = &server.client;
    let cfgs: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &cfg_resource());
    // Watched from before the first create: one LIST and one WATCH, no polling.
    let (done_tx, done_rx) =
        tokio::sync::oneshot::channel::<(Instant, HashMap<String, (String, String)>)>();
    let watch = {
        let cfgs = cfgs.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen: HashMap<String, (String, String)> = HashMap::new();
            let mut ready = Some(ready_tx);
            let mut done = Some(done_tx);
            let mut stream = watcher(cfgs, watcher::Config::default()).boxed();
            while let Some(event) = stream.try_next().await.transpose() {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                        match allocated(&obj) {
                            Some(a) => seen.insert(obj.name_any(), a),
                            None => seen.remove(&obj.name_any()),
                        };
                        if seen.len() == vms
                            && let Some(tx) = done.take()
                        {
                            let _ = tx.send((Instant::now(), seen.clone()));
                        }
                    }
                    Ok(watcher::Event::Delete(obj)) => {
                        seen.remove(&obj.name_any());
                    }
                    Ok(watcher::Event::Init) => {}
                    Err(e) => eprintln!("vmnetcfg watch: {e}"),
                }
            }
        });
        ready_rx.await?;
        task
    };
    let before = server.requests().await?;
    let (cpu0, server0, busy0, me0) = (
        cpu_secs(controller.pid())?,
        cpu_secs(server.pid())?,
        machine_busy_secs()?,
        cpu_secs(std::process::id())?,
    );
    let vms_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &vm_resource());
    let objects: Vec<DynamicObject> = (0..vms).map(vm).collect::<Result<_>>()?;
    let t0 = Instant::now();
    futures::stream::iter(&objects)
        .map(|obj| {
            let vms_api = vms_api.clone();
            async move { create(&vms_api, obj).await.map(|_| ()) }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let created_in = t0.elapsed().as_secs_f64();
    let (all_at, seen) = tokio::time::timeout(RUN_TIMEOUT, done_rx)
        .await
        .map_err(|_| format!("not every vmnetcfg was allocated within {RUN_TIMEOUT:?}"))??;
    let allocated_after_first = all_at.duration_since(t0).as_secs_f64();
    // What the fill set off (Events, the pool's reconciles) finishes shortly after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.requests().await?;
    let (cpu1, server1, busy1, me1) = (
        cpu_secs(controller.pid())?,
        cpu_secs(server.pid())?,
        machine_busy_secs()?,
        cpu_secs(std::process::id())?,
    );
    watch.abort();
    let requests = before.since(&after);

    let mut by_ip: HashMap<&str, &str> = HashMap::new();
    let mut duplicates = 0;
    for (m, ip) in seen.values() {
        if by_ip.insert(ip, m).is_some() {
            duplicates += 1;
        }
    }
    let pools: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &pool_resource());
    let pool = pools.get(POOL).await?;
    let in_pool: BTreeMap<String, String> = pool.data["status"]["ipv4"]["allocated"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| *v != "EXCLUDED" && *v != "RESERVED")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let from_cfgs: BTreeMap<String, String> = seen
        .values()
        .map(|(m, ip)| (ip.clone(), m.clone()))
        .collect();
    Ok(Fill {
        vms,
        batch,
        created_in,
        allocated_after_first,
        allocated_after_last: allocated_after_first - created_in,
        pool_writes: requests.sum(|verb, what| verb == "PUT" && what == "ippools/status"),
        requests,
        controller_cpu: cpu1 - cpu0,
        server_cpu: server1 - server0,
        machine_busy: busy1 - busy0,
        bench_cpu: me1 - me0,
        duplicates,
        agree: in_pool == from_cfgs && in_pool.len() == vms,
    })
}

fn cidr_for(vms: usize) -> Result<ipnet::Ipv4Net> {
    // A /20 (4,093 addresses in the range) as in the measurements before group commit; a
    // /18 (16,381) beyond.
    Ok(if vms <= 4_000 {
        "10.80.0.0/20".parse()?
    } else {
        "10.64.0.0/18".parse()?
    })
}

fn extra_args() -> Vec<String> {
    std::env::var("VMDHCP_BENCH_EXTRA_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn print_fill(f: &Fill) {
    let n = f.vms as f64;
    let all = f.requests.sum(|_, _| true);
    let bench_own = f
        .requests
        .sum(|verb, what| verb == "POST" && what == "virtualmachines");
    let controller = all - bench_own;
    let writes = f
        .requests
        .sum(|verb, what| is_write(verb) && what != "virtualmachines");
    println!(
        "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.1} / {:.1} / {:.1} | {} | {} |",
        f.vms,
        f.batch,
        f.created_in,
        f.allocated_after_first,
        f.allocated_after_last,
        controller / n,
        writes / n,
        f.pool_writes,
        f.controller_cpu * 1000.0 / n,
        f.server_cpu * 1000.0 / n,
        f.machine_busy,
        f.bench_cpu,
        f.machine_busy - f.bench_cpu - f.controller_cpu - f.server_cpu,
        f.duplicates,
        if f.agree { "yes" } else { "NO" },
    );
    println!("    requests: {}", f.requests.table());
}

async fn run_fill(
    server_bin: &Path,
    controller_bin: &Path,
    vms: usize,
    batch: usize,
    i: usize,
) -> Result<Fill> {
    let server = Server::start(
        server_bin,
        std::env::temp_dir().join(format!("vmdhcp-bench-{}-{i}", std::process::id())),
    )
    .await?;
    prepare(&server.client, cidr_for(vms)?).await?;
    let mut args = vec!["--ippool-batch-size".to_owned(), batch.to_string()];
    args.extend(extra_args());
    let controller = Controller::start(controller_bin, &server, &args)?;
    pool_ready(&server.client).await?;
    let result = fill(&server, &controller, vms, batch).await;
    controller.stop().await?;
    server.stop().await;
    result
}

/// The restart over `vms` allocated vmnetcfgs.
async fn restart(server_bin: &Path, controller_bin: &Path, vms: usize) -> Result<()> {
    let server = Server::start(
        server_bin,
        std::env::temp_dir().join(format!("vmdhcp-bench-{}-restart", std::process::id())),
    )
    .await?;
    prepare(&server.client, cidr_for(vms)?).await?;
    let controller = Controller::start(controller_bin, &server, &extra_args())?;
    pool_ready(&server.client).await?;
    let filled = fill(&server, &controller, vms, pool_batch_default()).await?;
    println!("fill before the restart:");
    print_fill(&filled);
    controller.stop().await?;
    let snapshot = |client: Client| async move {
        let cfgs: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &cfg_resource());
        let pools: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &pool_resource());
        let mut versions: BTreeMap<String, String> = cfgs
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(|c| (c.name_any(), c.resource_version().unwrap_or_default()))
            .collect();
        let pool = pools.get(POOL).await?;
        versions.insert(
            format!("ippool {POOL}"),
            pool.resource_version().unwrap_or_default(),
        );
        // The controller applies its CRDs at every start: unchanged, they must stay as stored.
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client);
        for crd in crds.list(&Default::default()).await?.items {
            versions.insert(
                format!("crd {}", crd.name_any()),
                crd.resource_version().unwrap_or_default(),
            );
        }
        Result::<_>::Ok(versions)
    };
    let versions_before = snapshot(server.client.clone()).await?;
    let before = server.requests().await?;
    let server0 = cpu_secs(server.pid())?;
    let t0 = Instant::now();
    let controller = Controller::start(controller_bin, &server, &extra_args())?;
    let synced = wait_for("/readyz", Duration::from_secs(300), || async {
        controller
            .get("/readyz")
            .await
            .filter(|(code, _)| *code == 200)
            .map(|_| Instant::now())
    })
    .await?;
    let settled = wait_for(
        "every vmnetcfg's gauge",
        Duration::from_secs(600),
        || async {
            let (_, metrics) = controller.get("/metrics").await?;
            let series = metrics
                .lines()
                .filter(|l| l.starts_with("vmdhcpcontroller_vmnetcfg_status{"))
                .count();
            let pool = metrics.contains(&format!("ippool=\"{NS}/{POOL}\""));
            (pool && series == vms).then(Instant::now)
        },
    )
    .await?;
    let cpu_settled = cpu_secs(controller.pid())?;
    // Anything a settled controller would still write shows within a few seconds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = server.requests().await?;
    let server1 = cpu_secs(server.pid())?;
    let requests = before.since(&after);
    let versions_after = snapshot(server.client.clone()).await?;
    let rewritten = versions_before
        .iter()
        .filter(|(k, v)| versions_after.get(*k) != Some(v))
        .count();
    // Server-side applies of the unchanged CRDs store nothing (`rewritten` checks it); the
    // Leases are the API server's own heartbeat (this controller runs without election).
    let writes = 0.0
        + requests.sum(|verb, what| {
            is_write(verb)
                && what != "leases"
                && !(verb == "APPLY" && what == "customresourcedefinitions")
        });
    println!(
        "restart over {vms} allocated vmnetcfgs: caches synced {:.2} s after start, settled {:.2} s after start; controller CPU {:.2} s to settle; API server CPU {:.2} s; write requests (other than the CRDs' start-up apply) {writes}; objects rewritten (pool, vmnetcfgs, CRDs) {rewritten}",
        synced.duration_since(t0).as_secs_f64(),
        settled.duration_since(t0).as_secs_f64(),
        cpu_settled,
        server1 - server0,
    );
    println!(
        "    requests (from before the start to 5 s after settling): {}",
        requests.table()
    );
    controller.stop().await?;
    server.stop().await;
    if writes > 0.0 || rewritten > 0 {
        return Err(format!(
            "the restart wrote: {writes} write requests, {rewritten} objects changed"
        )
        .into());
    }
    Ok(())
}

fn pool_batch_default() -> usize {
    vmdhcp_controller::pool_batch::DEFAULT_MAX
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let vms = env_list("VMDHCP_BENCH_VMS", "200,1000")?;
    let batches = env_list("VMDHCP_BENCH_BATCH", &format!("1,{}", pool_batch_default()))?;
    let restart_vms = env_list("VMDHCP_BENCH_RESTART_VMS", "10000")?
        .first()
        .copied()
        .unwrap_or(0);
    let root = workspace_root();
    let server_bin = binary(
        "VMDHCP_KUBE_TEST_SERVER",
        &mut std::process::Command::new(root.join("scripts/kube-test-server/build.sh")),
        None,
    )?;
    let controller_bin = binary(
        "VMDHCP_CONTROLLER_BIN",
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "-p",
                "vmdhcp-controller",
                "--bin",
                "vmdhcp-controller",
            ]),
        Some(root.join("target/release/vmdhcp-controller")),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!("controller: {} {}", controller_bin.display(), extra_args().join(" "));
        println!(
            "| VMs | batch size | created in s | all Allocated s after first create | s after last create | requests/allocation | writes/allocation | IPPool status writes | controller CPU ms/allocation | API server+etcd CPU ms/allocation | machine busy / bench client / others CPU s | duplicates | pool = vmnetcfgs |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut i = 0;
        for &n in &vms {
            for &b in &batches {
                i += 1;
                let f = run_fill(&server_bin, &controller_bin, n, b, i).await?;
                print_fill(&f);
                if f.duplicates > 0 || !f.agree {
                    return Err(format!("{n} VMs, batch {b}: duplicates or disagreement").into());
                }
            }
        }
        if restart_vms > 0 {
            restart(&server_bin, &controller_bin, restart_vms).await?;
        }
        Ok(())
    })
}
