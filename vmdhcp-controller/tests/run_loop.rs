//! The whole controller ([`run::run`]) in-process against the in-memory API server of
//! `fake_api`: the scenario of `tests/e2e.rs` (VM → vmnetcfg → allocation, agent Pod, NAD
//! labels), then quiescence, a restart, deletion, and two VMs created at once.
//!
//! `run::run` builds its client from the flags, so the fake is served over plain HTTP on
//! 127.0.0.1 and the controller gets `--kubeconfig` pointing at it.

mod fake_api;

use std::time::Duration;

use clap::Parser;
use fake_api::Fake;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vmdhcp_controller::cli::Args;

const MAC: &str = "52:54:00:aa:bb:01";
const NADS: &str = "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions";
const NAD: &str =
    "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/net-48";
const POOLS: &str = "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools";
const POOL: &str = "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48";
const CFGS: &str =
    "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/virtualmachinenetworkconfigs";
const VMS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";
const AGENT: &str = "/api/v1/namespaces/agents/pods/default-net-48-agent";
const SETTLE: Duration = Duration::from_secs(20);

struct Controller {
    stop: CancellationToken,
    run: JoinHandle<Result<(), vmdhcp_controller::Error>>,
}

impl Controller {
    fn args(kubeconfig: &str) -> Args {
        Args::try_parse_from([
            "vmdhcp-controller",
            "--no-leader-election",
            "--metrics-bind",
            "127.0.0.1:0",
            "--namespace",
            "agents",
            "--image",
            "rancher/harvester-vm-dhcp-agent:v9",
            "--kubeconfig",
            kubeconfig,
        ])
        .expect("arguments")
    }

    /// `run::run_with_client` over the fake's in-memory transport.
    fn start(client: &kube::Client) -> Self {
        logs();
        let stop = CancellationToken::new();
        let run = tokio::spawn(vmdhcp_controller::run::run_with_client(
            client.clone(),
            Self::args("/nonexistent"),
            stop.clone(),
        ));
        Self { stop, run }
    }

    /// `run::run`, which builds its own client from `--kubeconfig`: the fake over HTTP.
    async fn start_over_http(fake: &Fake) -> Self {
        logs();
        let kubeconfig = fake.kubeconfig().await;
        let args = Self::args(kubeconfig.to_str().expect("utf-8 path"));
        let stop = CancellationToken::new();
        let run = tokio::spawn(vmdhcp_controller::run::run(args, stop.clone()));
        Self { stop, run }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.run)
            .await
            .expect("the controller stops within 10 s of its token")
            .expect("controller task")
            .expect("the controller ran cleanly");
    }
}

/// The controller's logs on the test's output (`RUST_LOG`, else warnings and its info).
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,vmdhcp_controller=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Polls `probe` every 100 ms until it answers, or panics after `within` with `context()`.
async fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn vm_path(name: &str) -> String {
    format!("{VMS}/{name}")
}

fn cfg_path(name: &str) -> String {
    format!("{CFGS}/{name}")
}

/// Everything the scenario looks at, for failure messages.
fn dump(fake: &Fake) -> String {
    let show = |path: &str| {
        format!(
            "{path}: {}",
            fake.get(path).map_or_else(
                || "absent".to_owned(),
                |v| serde_json::to_string_pretty(&v).unwrap_or_default()
            )
        )
    };
    let writes: Vec<String> = fake
        .writes_since(0, "/")
        .iter()
        .map(ToString::to_string)
        .collect();
    format!(
        "{}\n{}\n{}\n{}\nwrites:\n{}\nwatch events delivered:\n{}\nrequests:\n{}\nunsupported: {:?}",
        show(POOL),
        show(&cfg_path("vm-1")),
        show(AGENT),
        show(NAD),
        writes.join("\n"),
        fake.delivered().join("\n"),
        fake.requests()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        fake.unsupported()
    )
}

fn vm(name: &str, mac: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default",
            "annotations": {"harvesterhci.io/mac-address": format!("{{\"nic-1\":\"{mac}\"}}")}},
        "spec": {"runStrategy": "Halted", "template": {"spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}, {"name": "nic-1", "bridge": {}}]}},
            "networks": [{"name": "default", "pod": {}}, {"name": "nic-1", "multus": {"networkName": "net-48"}}]}}}
    })
}

/// The NAD `default/net-48`, the IPPool on it, and (when `with_vm`) the VM `default/vm-1`.
fn scenario(with_vm: bool) -> (kube::Client, Fake) {
    let (client, fake) = fake_api::start();
    fake.create(
        NADS,
        json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "net-48", "namespace": "default",
                "labels": {"network.harvesterhci.io/clusternetwork": "mgmt"}},
            "spec": {"config": "{\"cniVersion\":\"0.3.1\",\"type\":\"bridge\"}"}}),
    );
    fake.create(
        POOLS,
        json!({"apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net-48", "namespace": "default"},
            "spec": {"networkName": "default/net-48", "ipv4Config": {
                "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77",
                "pool": {"start": "192.168.48.81", "end": "192.168.48.90", "exclude": ["192.168.48.81"]}}}}),
    );
    if with_vm {
        fake.create(VMS, vm("vm-1", MAC));
    }
    (client, fake)
}

fn condition(object: &Value, type_: &str) -> Option<(String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// The vmnetcfg of `vm` once its only entry is `Allocated`: that entry's address.
fn allocated(fake: &Fake, vm: &str) -> Option<String> {
    let cfg = fake.get(&cfg_path(vm))?;
    let entry = cfg["status"]["networkConfigs"].as_array()?.first()?.clone();
    (entry["state"] == "Allocated").then(|| {
        entry["allocatedIPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    })
}

/// Runs the scenario up to the settled state of step 2 (agent not ready) and checks it.
async fn settled(fake: &Fake) {
    let ip = eventually(
        "vmnetcfg default/vm-1 to be Allocated",
        SETTLE,
        || allocated(fake, "vm-1"),
        || dump(fake),
    )
    .await;
    assert_eq!(
        ip,
        "192.168.48.82",
        "lowest free address after the exclusion\n{}",
        dump(fake)
    );
    let cfg = fake.get(&cfg_path("vm-1")).expect("vmnetcfg");
    let vm = fake.get(&vm_path("vm-1")).expect("vm");
    let owner = &cfg["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["name"].as_str(),
            owner["uid"].as_str()
        ),
        (
            Some("VirtualMachine"),
            Some("vm-1"),
            vm["metadata"]["uid"].as_str()
        ),
        "{cfg}"
    );
    assert_eq!(
        cfg["metadata"]["finalizers"],
        json!(["wrangler.cattle.io/vm-dhcp-vmnetcfg-controller"]),
        "{cfg}"
    );
    assert_eq!(
        cfg["spec"]["networkConfigs"][0]["networkName"], "net-48",
        "{cfg}"
    );
    assert_eq!(cfg["spec"]["networkConfigs"][0]["macAddress"], MAC, "{cfg}");
    assert_eq!(
        cfg["status"]["networkConfigs"],
        json!([{"allocatedIPAddress": "192.168.48.82", "macAddress": MAC, "networkName": "net-48", "state": "Allocated"}]),
        "{cfg}"
    );

    settled_pool(fake).await;
}

/// The IPPool, its agent and its NAD in the settled state of step 2.
async fn settled_pool(fake: &Fake) {
    let pool = eventually(
        "the IPPool status to settle (agent not ready)",
        SETTLE,
        || {
            let pool = fake.get(POOL)?;
            (condition(&pool, "AgentReady").is_some() && pool["status"]["ipv4"]["used"] == 1)
                .then_some(pool)
        },
        || dump(fake),
    )
    .await;
    let v4 = &pool["status"]["ipv4"];
    assert_eq!(
        v4["allocated"],
        json!({"192.168.48.81": "EXCLUDED", "192.168.48.82": MAC}),
        "{pool}"
    );
    assert_eq!(
        (v4["used"].clone(), v4["available"].clone()),
        (json!(1), json!(8)),
        "{pool}"
    );
    for (type_, want) in [
        ("Registered", "True"),
        ("CacheReady", "True"),
        ("Stopped", "False"),
    ] {
        assert_eq!(
            condition(&pool, type_).map(|c| c.0).as_deref(),
            Some(want),
            "{type_}: {pool}"
        );
    }
    assert_eq!(
        condition(&pool, "AgentReady"),
        Some((
            "False".to_owned(),
            "agent pod default-net-48-agent not ready".to_owned()
        )),
        "{pool}"
    );
    assert_eq!(
        pool["metadata"]["finalizers"],
        json!(["wrangler.cattle.io/vm-dhcp-ippool-controller"]),
        "{pool}"
    );

    let agent = fake
        .get(AGENT)
        .unwrap_or_else(|| panic!("agent pod created\n{}", dump(fake)));
    assert_eq!(
        agent["spec"]["containers"][0]["args"],
        json!(["--ippool-ref", "default/net-48"]),
        "{agent}"
    );
    assert_eq!(
        pool["status"]["agentPodRef"],
        json!({"namespace": "agents", "name": "default-net-48-agent",
               "image": "rancher/harvester-vm-dhcp-agent:v9", "uid": agent["metadata"]["uid"]}),
        "{pool}"
    );
    let nad = fake.get(NAD).expect("nad");
    assert_eq!(
        nad["metadata"]["labels"],
        json!({"network.harvesterhci.io/clusternetwork": "mgmt",
               "network.harvesterhci.io/ippool-namespace": "default",
               "network.harvesterhci.io/ippool-name": "net-48"}),
        "{nad}"
    );
}

/// What the kubelet would write once the agent runs.
fn make_agent_ready(fake: &Fake) {
    fake.modify(AGENT, |pod| {
        pod["status"] = json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    });
}

async fn agent_ready(fake: &Fake) {
    make_agent_ready(fake);
    eventually(
        "AgentReady to turn True",
        SETTLE,
        || {
            let pool = fake.get(POOL)?;
            (condition(&pool, "AgentReady")?.0 == "True").then_some(())
        },
        || dump(fake),
    )
    .await;
}

/// Counts writes over `window`; they must be none.
async fn assert_quiet(fake: &Fake, window: Duration, when: &str) {
    let mark = fake.mark();
    tokio::time::sleep(window).await;
    let writes: Vec<String> = fake
        .writes_since(mark, "/")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        writes.is_empty(),
        "{when}: {} writes in {window:?} (a hot loop?):\n{}\n{}",
        writes.len(),
        writes.join("\n"),
        dump(fake)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_gets_an_address_and_its_pool_an_agent() {
    let (client, fake) = scenario(true);
    let t0 = std::time::Instant::now();
    let controller = Controller::start(&client);
    settled(&fake).await;
    eprintln!("settled after {:?}", t0.elapsed());
    agent_ready(&fake).await;
    eprintln!("agent ready after {:?}", t0.elapsed());
    let pool = fake.get(POOL).expect("pool");
    for (type_, want) in [
        ("Registered", "True"),
        ("CacheReady", "True"),
        ("AgentReady", "True"),
        ("Stopped", "False"),
    ] {
        assert_eq!(
            condition(&pool, type_).map(|c| c.0).as_deref(),
            Some(want),
            "{type_}: {pool}"
        );
    }
    controller.stop().await;
    eprintln!("stopped after {:?}", t0.elapsed());
    assert!(fake.unsupported().is_empty(), "{:?}", fake.unsupported());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_controller_writes_nothing() {
    let (client, fake) = scenario(true);
    let controller = Controller::start(&client);
    settled(&fake).await;
    agent_ready(&fake).await;
    // Let the last writes' watch events come back round.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_quiet(&fake, Duration::from_secs(5), "settled").await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_changes_nothing() {
    let (client, fake) = scenario(true);
    let controller = Controller::start(&client);
    settled(&fake).await;
    agent_ready(&fake).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    controller.stop().await;
    let pool_before = fake.get(POOL).expect("pool");
    let cfg_before = fake.get(&cfg_path("vm-1")).expect("vmnetcfg");

    let mark = fake.mark();
    let controller = Controller::start(&client);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pool = fake.get(POOL).expect("pool");
    let cfg = fake.get(&cfg_path("vm-1")).expect("vmnetcfg");
    assert_eq!(
        pool["status"]["ipv4"], pool_before["status"]["ipv4"],
        "pool ipv4 after a restart"
    );
    assert_eq!(
        cfg["status"], cfg_before["status"],
        "vmnetcfg status after a restart"
    );
    let writes: Vec<String> = fake
        .writes_since(mark, "/apis/network.harvesterhci.io/")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        writes.is_empty(),
        "a restart rewrote vmdhcp objects:\n{}",
        writes.join("\n")
    );
    assert_eq!(
        pool["metadata"]["resourceVersion"], pool_before["metadata"]["resourceVersion"],
        "the IPPool was rewritten by the restart:\nbefore {pool_before}\nafter {pool}"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_releases_and_cleans_up() {
    let (client, fake) = scenario(true);
    let controller = Controller::start(&client);
    settled(&fake).await;

    // No garbage collector here: the vmnetcfg is deleted by hand, as in tests/e2e.rs.
    assert_eq!(fake.delete(&vm_path("vm-1")), 200);
    assert_eq!(fake.delete(&cfg_path("vm-1")), 200);
    eventually(
        "the vmnetcfg to be released and gone",
        SETTLE,
        || fake.get(&cfg_path("vm-1")).is_none().then_some(()),
        || dump(&fake),
    )
    .await;
    let pool = eventually(
        "the address to go back to the pool",
        SETTLE,
        || {
            let pool = fake.get(POOL)?;
            (pool["status"]["ipv4"]["used"] == 0).then_some(pool)
        },
        || dump(&fake),
    )
    .await;
    assert_eq!(
        pool["status"]["ipv4"]["allocated"],
        json!({"192.168.48.81": "EXCLUDED"}),
        "{pool}"
    );
    assert_eq!(pool["status"]["ipv4"]["available"], 9, "{pool}");

    assert_eq!(fake.delete(POOL), 200);
    eventually(
        "the IPPool, its agent and its NAD labels to go",
        SETTLE,
        || {
            let labels = fake.get(NAD)?["metadata"]["labels"].clone();
            (fake.get(POOL).is_none()
                && fake.get(AGENT).is_none()
                && labels == json!({"network.harvesterhci.io/clusternetwork": "mgmt"}))
            .then_some(())
        },
        || dump(&fake),
    )
    .await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vms_created_at_once_get_different_addresses() {
    let (client, fake) = scenario(false);
    let controller = Controller::start(&client);
    eventually(
        "the IPPool to be CacheReady",
        SETTLE,
        || (condition(&fake.get(POOL)?, "CacheReady")?.0 == "True").then_some(()),
        || dump(&fake),
    )
    .await;
    fake.create(VMS, vm("vm-a", "52:54:00:aa:bb:0a"));
    fake.create(VMS, vm("vm-b", "52:54:00:aa:bb:0b"));
    let a = eventually(
        "vm-a Allocated",
        SETTLE,
        || allocated(&fake, "vm-a"),
        || dump(&fake),
    )
    .await;
    let b = eventually(
        "vm-b Allocated",
        SETTLE,
        || allocated(&fake, "vm-b"),
        || dump(&fake),
    )
    .await;
    let mut ips = vec![a, b];
    ips.sort();
    assert_eq!(ips, ["192.168.48.82", "192.168.48.83"]);
    let pool = eventually(
        "the pool to count both",
        SETTLE,
        || {
            let pool = fake.get(POOL)?;
            (pool["status"]["ipv4"]["used"] == 2).then_some(pool)
        },
        || dump(&fake),
    )
    .await;
    assert_eq!(
        pool["status"]["ipv4"]["allocated"],
        json!({"192.168.48.81": "EXCLUDED", "192.168.48.82": allocated_mac(&fake, "192.168.48.82"),
               "192.168.48.83": allocated_mac(&fake, "192.168.48.83")}),
        "{pool}"
    );
    controller.stop().await;
}

/// `run::run` itself, with `--kubeconfig` naming the fake served over HTTP: the client the
/// binary builds, plain-HTTP watches included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_kubeconfig_reaches_the_same_state() {
    let (_, fake) = scenario(true);
    let controller = Controller::start_over_http(&fake).await;
    settled(&fake).await;
    agent_ready(&fake).await;
    controller.stop().await;
}

/// The MAC of the vmnetcfg entry holding `ip`.
fn allocated_mac(fake: &Fake, ip: &str) -> String {
    fake.list(CFGS)
        .iter()
        .flat_map(|c| {
            c["status"]["networkConfigs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|e| e["allocatedIPAddress"] == ip)
        .and_then(|e| e["macAddress"].as_str().map(ToOwned::to_owned))
        .unwrap_or_default()
}

/// The fake itself through kube's own client, over the in-memory transport: errors,
/// optimistic concurrency, subresources, finalizers, and a watcher that streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_api_server_behaves_for_kube_clients() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use kube::runtime::watcher;

    let (client, fake) = fake_api::start();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "agents");
    let err = pods.get("nope").await.expect_err("404");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404 && s.message == "pods \"nope\" not found"),
        "{err}"
    );

    let mut events = watcher(pods.clone(), watcher::Config::default().labels("app=x")).boxed();
    // The initial (empty) list.
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("init");
    assert!(matches!(first, Some(Ok(watcher::Event::Init))), "{first:?}");
    assert!(matches!(
        events.next().await,
        Some(Ok(watcher::Event::InitDone))
    ));

    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p", "labels": {"app": "x"}, "finalizers": ["f"]},
        "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Running"}}),
    )
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    assert!(created.status.is_none(), "status is dropped on create");
    assert_eq!(created.metadata.generation, Some(1));
    let conflict = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect_err("409");
    assert!(
        matches!(&conflict, kube::Error::Api(s) if s.reason == "AlreadyExists"),
        "{conflict}"
    );
    let seen = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("streamed");
    assert!(
        matches!(&seen, Some(Ok(watcher::Event::Apply(p))) if p.metadata.name.as_deref() == Some("p")),
        "{seen:?}"
    );

    optimistic_concurrency_and_subresources(&pods, &created).await;

    // A selector that stops matching is a deletion for the watch.
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .expect("merge");
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("streamed")
        {
            Some(Ok(watcher::Event::Apply(_))) => {}
            Some(Ok(watcher::Event::Delete(p))) => {
                assert_eq!(p.metadata.name.as_deref(), Some("p"));
                break;
            }
            other => panic!("{other:?}"),
        }
    }

    finalizers_and_json_patches(&client, &fake).await;
}

/// 409 on a stale resourceVersion; `status` ignored on the object, written on `/status`.
async fn optimistic_concurrency_and_subresources(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    created: &k8s_openapi::api::core::v1::Pod,
) {
    use kube::api::PostParams;

    let mut stale = created.clone();
    stale.metadata.resource_version = Some("999".into());
    let err = pods
        .replace("p", &PostParams::default(), &stale)
        .await
        .expect_err("stale");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err}"
    );
    let mut with_status = created.clone();
    with_status.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    let replaced = pods
        .replace("p", &PostParams::default(), &with_status)
        .await
        .expect("no-op replace");
    assert_eq!(
        replaced.metadata.resource_version, created.metadata.resource_version,
        "status ignored: nothing changed"
    );
    let status = pods
        .replace_status("p", &PostParams::default(), &with_status)
        .await
        .expect("status");
    assert_eq!(
        status.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
}

/// Finalizers hold a deletion until the last goes; JSON-patch `test` ops as Kubernetes does.
async fn finalizers_and_json_patches(client: &kube::Client, fake: &Fake) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, Patch, PatchParams};

    let pods: Api<Pod> = Api::namespaced(client.clone(), "agents");
    // Finalizers: deletion waits for the last one to go.
    pods.delete("p", &DeleteParams::default())
        .await
        .expect("delete");
    let terminating = fake
        .get("/api/v1/namespaces/agents/pods/p")
        .expect("kept while finalized");
    assert!(
        terminating["metadata"]["deletionTimestamp"].is_string(),
        "{terminating}"
    );
    let remove = json_patch::Patch(
        serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "f"},
        {"op": "remove", "path": "/metadata/finalizers/0"}]))
        .expect("patch"),
    );
    pods.patch("p", &PatchParams::default(), &Patch::<()>::Json(remove))
        .await
        .expect("remove finalizer");
    assert!(
        fake.get("/api/v1/namespaces/agents/pods/p").is_none(),
        "gone with its last finalizer"
    );
    // A `test` of null on a missing path passes (kube's finalizer helper relies on it).
    let cm_path = "/api/v1/namespaces/agents/configmaps";
    fake.create(
        cm_path,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
    );
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "agents");
    let add = json_patch::Patch(
        serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]))
        .expect("patch"),
    );
    let cm = cms
        .patch("c", &PatchParams::default(), &Patch::<()>::Json(add))
        .await
        .expect("add finalizer");
    assert_eq!(cm.metadata.finalizers, Some(vec!["f".to_owned()]));
    assert_eq!(
        fake.count_writes("/api/v1/namespaces/agents/"),
        8,
        "{:#?}",
        fake.requests()
    );
    assert!(fake.list(cm_path).len() == 1 && fake.revision() > 0);
}
