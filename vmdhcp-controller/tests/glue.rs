//! The kube glue against a mock API server (tower-test): the exact calls a reconcile makes,
//! and what it does when the server answers with a conflict.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
use vmdhcp_controller::context::{Context, PoolWriters};
use vmdhcp_controller::metrics::Registry;
use vmdhcp_controller::pool_batch::{BatchSettings, NicRequest, OpOutcome, PoolOp};
use vmdhcp_controller::pool_plan::AgentSettings;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn context(client: Client) -> Arc<Context> {
    context_with(client, &[], BatchSettings::default())
}

/// A context whose IPPool cache holds `cached`.
fn context_with_pools(client: Client, cached: &[IPPool]) -> Arc<Context> {
    context_with(client, cached, BatchSettings::default())
}

/// A context whose IPPool cache holds `cached`, batching pool writes by `batch`.
fn context_with(client: Client, cached: &[IPPool], batch: BatchSettings) -> Arc<Context> {
    let (pools, mut writer) = reflector::store();
    for pool in cached {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pool.clone()));
    }
    let (vmnetcfgs, _) = reflector::store();
    Arc::new(Context {
        client: client.clone(),
        settings: AgentSettings {
            no_agent: false,
            dry_run: false,
            image: "rancher/harvester-vm-dhcp-agent:v2".into(),
            namespace: "harvester-system".into(),
            service_account: "agent".into(),
            node_grace: None,
            agent: vmdhcp_controller::agent_pod::AgentOptions::default(),
            orphan_grace: Some(std::time::Duration::from_secs(600)),
        },
        pools,
        vmnetcfgs,
        allocators: Mutex::default(),
        writers: PoolWriters::new(
            batch,
            Reporter {
                controller: "vm-dhcp-controller".into(),
                instance: None,
            },
            CancellationToken::new(),
        ),
        backoffs: vmdhcp_controller::context::Backoffs::default(),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "vm-dhcp-controller".into(),
                instance: None,
            },
        ),
        metrics: Arc::new(Registry::default()),
        synced: std::sync::atomic::AtomicBool::new(true),
        owners: vmdhcp_controller::gc::Memory::default(),
    })
}

fn pool_json(resource_version: &str, allocated: &Value) -> Value {
    json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "net-48", "namespace": "default", "uid": "pool-uid", "resourceVersion": resource_version,
                     "finalizers": ["wrangler.cattle.io/vm-dhcp-ippool-controller"]},
        "spec": {"networkName": "default/net-48", "ipv4Config": {
            "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77",
            "pool": {"start": "192.168.48.81", "end": "192.168.48.90"}}},
        "status": {"ipv4": {"allocated": allocated, "used": 0, "available": 10}}
    })
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code})
}

async fn body(request: Request<Body>) -> Value {
    use http_body_util::BodyExt;
    let bytes = request
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("JSON body")
}

#[tokio::test]
async fn an_allocation_that_conflicts_is_redone_on_the_fresh_status() {
    let (service, mut handle): (_, Handle) = tower_test::mock::pair();
    let ctx = context(Client::new(service, "default"));
    let server = tokio::spawn(async move {
        let mut puts = Vec::new();
        // 1: read at version 1, empty.
        let (req, send) = handle.next_request().await.expect("get");
        assert_eq!(
            (req.method(), req.uri().path()),
            (
                &Method::GET,
                "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48"
            )
        );
        send.send_response(respond(StatusCode::OK, &pool_json("1", &json!({}))));
        // 2: our write loses: another VM took .81 meanwhile.
        let (req, send) = handle.next_request().await.expect("put");
        assert_eq!(
            (req.method(), req.uri().path()),
            (
                &Method::PUT,
                "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48/status"
            )
        );
        puts.push(body(req).await);
        send.send_response(respond(StatusCode::CONFLICT, &status(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again")));
        // 3: read again at version 2.
        let (req, send) = handle.next_request().await.expect("get again");
        assert_eq!(req.method(), Method::GET);
        send.send_response(respond(
            StatusCode::OK,
            &pool_json("2", &json!({"192.168.48.81": "bb:bb:bb:bb:bb:01"})),
        ));
        // 4: the retried write succeeds.
        let (req, send) = handle.next_request().await.expect("put again");
        let written = body(req).await;
        puts.push(written.clone());
        let mut stored = written;
        stored["metadata"]["resourceVersion"] = json!("3");
        send.send_response(respond(StatusCode::OK, &stored));
        puts
    });
    let mac = "aa:aa:aa:aa:aa:01";
    let got = ctx
        .submit("default", "net-48", allocate(mac), "default/vm-1")
        .await
        .expect("allocated after one retry");
    let OpOutcome::Allocated(got) = got else {
        panic!("{got:?}");
    };
    assert_eq!(
        got.ip.to_string(),
        "192.168.48.82",
        "the address the other VM took is not handed out again"
    );
    let puts = server.await.expect("mock server");
    assert_eq!(puts[0]["metadata"]["resourceVersion"], "1");
    assert_eq!(puts[0]["status"]["ipv4"]["allocated"]["192.168.48.81"], mac);
    assert_eq!(
        puts[1]["metadata"]["resourceVersion"], "2",
        "the retry carries the version it read"
    );
    assert_eq!(
        puts[1]["status"]["ipv4"]["allocated"],
        json!({"192.168.48.81": "bb:bb:bb:bb:bb:01", "192.168.48.82": mac})
    );
    assert_eq!(
        (
            puts[1]["status"]["ipv4"]["used"].clone(),
            puts[1]["status"]["ipv4"]["available"].clone()
        ),
        (json!(2), json!(8))
    );
}

#[tokio::test]
async fn an_ippool_reconcile_creates_the_agent_and_records_it() {
    let (service, mut handle): (_, Handle) = tower_test::mock::pair();
    let ctx = context(Client::new(service, "default"));
    let pool: IPPool = serde_json::from_value(pool_json("5", &json!({}))).expect("pool");
    let server = tokio::spawn(async move {
        let mut calls = Vec::new();
        loop {
            let (req, send) = handle.next_request().await.expect("request");
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            calls.push(format!("{method} {path}"));
            match (method.as_str(), path.as_str()) {
                ("GET", "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/net-48") => send.send_response(respond(
                    StatusCode::OK,
                    &json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                        "metadata": {"name": "net-48", "namespace": "default", "resourceVersion": "9", "labels": {
                            "network.harvesterhci.io/clusternetwork": "mgmt",
                            "network.harvesterhci.io/ippool-namespace": "default",
                            "network.harvesterhci.io/ippool-name": "net-48"}},
                        "spec": {"config": "{}"}}),
                )),
                ("GET", "/api/v1/namespaces/harvester-system/pods/default-net-48-agent") => {
                    send.send_response(respond(StatusCode::NOT_FOUND, &status(404, "NotFound", "pods \"default-net-48-agent\" not found")));
                }
                ("POST", "/api/v1/namespaces/harvester-system/pods") => {
                    let mut pod = body(req).await;
                    assert_eq!(pod["metadata"]["name"], "default-net-48-agent");
                    assert_eq!(pod["spec"]["containers"][0]["args"], json!(["--ippool-ref", "default/net-48"]));
                    pod["metadata"]["uid"] = json!("pod-uid-1");
                    send.send_response(respond(StatusCode::CREATED, &pod));
                }
                ("POST", p) if p.ends_with("/events") => {
                    let event = body(req).await;
                    send.send_response(respond(StatusCode::CREATED, &event));
                }
                ("PUT", "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48/status") => {
                    let written = body(req).await;
                    send.send_response(respond(StatusCode::OK, &written));
                    return (calls, written);
                }
                other => panic!("unexpected call {other:?}"),
            }
        }
    });
    let action = vmdhcp_controller::reconcile::ippool::reconcile(Arc::new(pool), ctx)
        .await
        .expect("reconciles");
    let (calls, written) = server.await.expect("mock server");
    assert_eq!(
        calls
            .iter()
            .filter(|c| !c.ends_with("/events"))
            .cloned()
            .collect::<Vec<_>>(),
        [
            "GET /apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/net-48",
            "GET /api/v1/namespaces/harvester-system/pods/default-net-48-agent",
            "POST /api/v1/namespaces/harvester-system/pods",
            "PUT /apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48/status",
        ]
    );
    assert_eq!(written["metadata"]["resourceVersion"], "5");
    assert_eq!(
        written["status"]["agentPodRef"],
        json!({"namespace": "harvester-system", "name": "default-net-48-agent", "image": "rancher/harvester-vm-dhcp-agent:v2", "uid": "pod-uid-1"})
    );
    let conditions: Vec<(String, String)> = written["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (type_, want) in [
        ("Registered", "True"),
        ("CacheReady", "True"),
        ("AgentReady", "False"),
        ("Stopped", "False"),
    ] {
        assert!(
            conditions.contains(&(type_.to_owned(), want.to_owned())),
            "{type_} should be {want}: {conditions:?}"
        );
    }
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(30))
    );
}

fn vmnetcfg_json() -> Value {
    json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
        "metadata": {"name": "vm-1", "namespace": "default", "uid": "cfg-uid", "resourceVersion": "11",
                     "finalizers": ["wrangler.cattle.io/vm-dhcp-vmnetcfg-controller"]},
        "spec": {"vmName": "vm-1", "networkConfigs": [
            {"networkName": "net-48", "macAddress": "AA:AA:AA:AA:AA:01"},
            {"networkName": "default/unmanaged", "macAddress": "aa:aa:aa:aa:aa:02"}]}
    })
}

fn cache_ready(mut pool: Value, ready: bool) -> IPPool {
    pool["status"]["conditions"] =
        json!([{"type": "CacheReady", "status": if ready { "True" } else { "False" }}]);
    serde_json::from_value(pool).expect("pool")
}

/// Serves the calls of one vmnetcfg reconcile; returns the calls (events left out) and the
/// bodies of the PUTs.
async fn serve_vmnetcfg_reconcile(
    mut handle: Handle,
    pool_at_get: Value,
) -> (Vec<String>, Vec<Value>) {
    let mut calls = Vec::new();
    let mut puts = Vec::new();
    loop {
        let (req, send) = handle.next_request().await.expect("request");
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        if path.ends_with("/events") {
            let event = body(req).await;
            send.send_response(respond(StatusCode::CREATED, &event));
            continue;
        }
        calls.push(format!("{method} {path}"));
        match (method.as_str(), path.as_str()) {
            ("GET", "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48") => {
                send.send_response(respond(StatusCode::OK, &pool_at_get));
            }
            ("PUT", p) if p.ends_with("/status") => {
                let written = body(req).await;
                puts.push(written.clone());
                send.send_response(respond(StatusCode::OK, &written));
                if p.contains("virtualmachinenetworkconfigs") {
                    return (calls, puts);
                }
            }
            other => panic!("unexpected call {other:?}"),
        }
    }
}

/// Reconciles [`vmnetcfg_json`] against a pool whose cached `CacheReady` is `ready`.
async fn reconcile_vmnetcfg(
    ready: bool,
) -> (kube::runtime::controller::Action, Vec<String>, Vec<Value>) {
    let (service, handle): (_, Handle) = tower_test::mock::pair();
    let pool = pool_json("5", &json!({}));
    let ctx = context_with_pools(
        Client::new(service, "default"),
        &[cache_ready(pool.clone(), ready)],
    );
    let server = tokio::spawn(serve_vmnetcfg_reconcile(handle, pool));
    let cfg: VirtualMachineNetworkConfig =
        serde_json::from_value(vmnetcfg_json()).expect("vmnetcfg");
    let action = vmdhcp_controller::reconcile::vmnetcfg::reconcile(Arc::new(cfg), ctx)
        .await
        .expect("reconciles");
    let (calls, puts) = server.await.expect("mock server");
    (action, calls, puts)
}

#[tokio::test]
async fn a_vmnetcfg_gets_its_address_and_an_unmanaged_nic_is_left_alone() {
    let (action, calls, puts) = reconcile_vmnetcfg(true).await;
    assert_eq!(
        calls,
        [
            "GET /apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48",
            "PUT /apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48/status",
            "PUT /apis/network.harvesterhci.io/v1alpha1/namespaces/default/virtualmachinenetworkconfigs/vm-1/status",
        ]
    );
    assert_eq!(puts[0]["metadata"]["resourceVersion"], "5");
    assert_eq!(
        puts[0]["status"]["ipv4"]["allocated"],
        json!({"192.168.48.81": "AA:AA:AA:AA:AA:01"}),
        "the MAC as the vmnetcfg writes it"
    );
    let status = &puts[1]["status"];
    assert_eq!(
        status["networkConfigs"],
        json!([{"allocatedIPAddress": "192.168.48.81", "macAddress": "AA:AA:AA:AA:AA:01", "networkName": "net-48", "state": "Allocated"}])
    );
    let allocated = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Allocated")
        .expect("Allocated")
        .clone();
    assert_eq!(allocated["status"], "True");
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn a_nic_whose_pool_is_not_ready_fails_alone_with_upstreams_message() {
    let (action, calls, puts) = reconcile_vmnetcfg(false).await;
    assert_eq!(
        calls,
        [
            "GET /apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48",
            "PUT /apis/network.harvesterhci.io/v1alpha1/namespaces/default/virtualmachinenetworkconfigs/vm-1/status"
        ],
        "the pool is read (the cache may lag behind), not written"
    );
    let allocated = puts[0]["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Allocated")
        .expect("Allocated")
        .clone();
    assert_eq!(
        (allocated["status"].as_str(), allocated["message"].as_str()),
        (Some("False"), Some("ippool default/net-48 is not ready"))
    );
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(vmdhcp_controller::context::Backoffs::FIRST)
    );
}

/// A pool on a fake API server that enforces `resourceVersion` like the real one, until the
/// client is dropped: the pool as stored, conflicts, reads, writes.
async fn serve_pool_with_versions(mut handle: Handle) -> (Value, usize, usize, usize) {
    let mut stored = pool_json("1", &json!({}));
    let (mut conflicts, mut gets, mut puts) = (0, 0, 0);
    while let Some((req, send)) = handle.next_request().await {
        match *req.method() {
            Method::GET => {
                gets += 1;
                send.send_response(respond(StatusCode::OK, &stored));
            }
            Method::PUT => {
                puts += 1;
                let mut written = body(req).await;
                if written["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"] {
                    let next = stored["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        + 1;
                    written["metadata"]["resourceVersion"] = json!(next.to_string());
                    stored = written;
                    send.send_response(respond(StatusCode::OK, &stored));
                } else {
                    conflicts += 1;
                    send.send_response(respond(
                        StatusCode::CONFLICT,
                        &status(409, "Conflict", "the object has been modified"),
                    ));
                }
            }
            // The writer's Events about each batch.
            Method::POST if req.uri().path().ends_with("/events") => {
                let event = body(req).await;
                send.send_response(respond(StatusCode::CREATED, &event));
            }
            ref other => panic!("unexpected {other}"),
        }
    }
    (stored, conflicts, gets, puts)
}

fn allocate(mac: &str) -> PoolOp {
    PoolOp::Allocate(NicRequest {
        mac_text: mac.to_owned(),
        mac: mac.parse().expect("mac"),
        desired: None,
        previous: None,
    })
}

/// Four NICs of one process ask one pool at once, with pool writes batched by `max`: their
/// addresses, and the pool as stored with the number of conflicts, reads and writes.
async fn four_nics_at_once(max: usize) -> (Vec<String>, Value, usize, usize, usize) {
    let (service, handle): (_, Handle) = tower_test::mock::pair();
    let ctx = context_with(
        Client::new(service, "default"),
        &[],
        BatchSettings {
            max,
            wait: std::time::Duration::ZERO,
        },
    );
    let server = tokio::spawn(serve_pool_with_versions(handle));
    let tasks: Vec<_> = (1..=4)
        .map(|i| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                match ctx
                    .submit(
                        "default",
                        "net-48",
                        allocate(&format!("aa:aa:aa:aa:aa:0{i}")),
                        &format!("default/vm-{i}"),
                    )
                    .await
                    .expect("allocated")
                {
                    OpOutcome::Allocated(a) => a.ip.to_string(),
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let mut ips = Vec::new();
    for t in tasks {
        ips.push(t.await.expect("task"));
    }
    // The writer lets go of the context once nothing waits; then the server sees the end.
    drop(ctx);
    let (stored, conflicts, gets, puts) =
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("the writer let go of the client")
            .expect("fake server");
    ips.sort();
    (ips, stored, conflicts, gets, puts)
}

#[tokio::test]
async fn nics_waiting_for_one_pool_share_one_status_write() {
    let (ips, stored, conflicts, gets, puts) = four_nics_at_once(500).await;
    assert_eq!(
        ips,
        [
            "192.168.48.81",
            "192.168.48.82",
            "192.168.48.83",
            "192.168.48.84"
        ]
    );
    assert_eq!(
        (conflicts, gets, puts),
        (0, 1, 1),
        "one read, one write for four NICs"
    );
    assert_eq!(
        stored["status"]["ipv4"]["allocated"]
            .as_object()
            .map(serde_json::Map::len),
        Some(4)
    );
    assert_eq!(
        (
            stored["status"]["ipv4"]["used"].clone(),
            stored["status"]["ipv4"]["available"].clone()
        ),
        (json!(4), json!(6))
    );
}

#[tokio::test]
async fn batch_size_one_writes_once_per_nic_on_the_pool_it_wrote_last() {
    let (ips, stored, conflicts, gets, puts) = four_nics_at_once(1).await;
    assert_eq!(ips.len(), 4);
    assert_eq!(
        ips.iter().collect::<std::collections::BTreeSet<_>>().len(),
        4,
        "distinct: {ips:?}"
    );
    assert_eq!(
        (conflicts, gets, puts),
        (0, 1, 4),
        "one write per NIC; the pool is read once, then each write starts from the previous one"
    );
    assert_eq!(stored["metadata"]["resourceVersion"], "5");
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewal_hangs_stops_leading_at_its_renew_deadline() {
    use k8s_openapi::api::coordination::v1::Lease;
    use vmdhcp_controller::leader::{self, Timing};

    let (service, mut handle): (_, Handle) = tower_test::mock::pair();
    let client = Client::new(service, "default");
    let (leading_tx, leading) = tokio::sync::watch::channel(false);
    let timing = Timing {
        lease: std::time::Duration::from_secs(15),
        renew_deadline: std::time::Duration::from_secs(10),
        retry: std::time::Duration::from_secs(2),
    };
    let started = tokio::time::Instant::now();
    let election = tokio::spawn(async move {
        leader::run(
            kube::Api::<Lease>::namespaced(client, "kube-system"),
            "vm-dhcp-controllers",
            "me",
            timing,
            leading_tx,
            tokio_util::sync::CancellationToken::new(),
        )
        .await
    });
    // No Lease yet: we create it and lead.
    let (req, send) = handle.next_request().await.expect("get");
    assert_eq!(
        req.uri().path(),
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/vm-dhcp-controllers"
    );
    send.send_response(respond(
        StatusCode::NOT_FOUND,
        &status(
            404,
            "NotFound",
            "leases.coordination.k8s.io \"vm-dhcp-controllers\" not found",
        ),
    ));
    let (req, send) = handle.next_request().await.expect("create");
    assert_eq!(req.method(), Method::POST);
    let mut lease = body(req).await;
    assert_eq!(lease["spec"]["holderIdentity"], "me");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
    lease["metadata"]["resourceVersion"] = json!("1");
    send.send_response(respond(StatusCode::CREATED, &lease));
    // The next renewal's read never returns.
    let (_stuck, _never_answered) = handle.next_request().await.expect("renewal");
    let ended = election.await.expect("election task");
    let lost = ended.expect_err("a leader that cannot renew must stop");
    assert!(
        lost.to_string().contains("not renewed within 10s"),
        "{lost}"
    );
    assert!(!*leading.borrow(), "no longer leading");
    let after = started.elapsed();
    assert!(
        after >= std::time::Duration::from_secs(10) && after < std::time::Duration::from_secs(13),
        "{after:?}"
    );
}

/// Everything one reconcile called (method, path, body), served by `answer` until the client
/// is dropped.
async fn serve_all(
    mut handle: Handle,
    answer: impl Fn(&str, &str, &Value) -> Response<Body>,
) -> Vec<(String, String, Value)> {
    let mut calls = Vec::new();
    while let Some((req, send)) = handle.next_request().await {
        let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
        let sent = if method == "GET" || method == "DELETE" {
            Value::Null
        } else {
            body(req).await
        };
        send.send_response(answer(&method, &path, &sent));
        calls.push((method, path, sent));
    }
    calls
}

const NAD_PATH: &str =
    "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/net-48";
const AGENT_PATH: &str = "/api/v1/namespaces/harvester-system/pods/default-net-48-agent";

fn labelled_nad() -> Value {
    json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "net-48", "namespace": "default", "resourceVersion": "9", "labels": {
            "network.harvesterhci.io/clusternetwork": "mgmt",
            "network.harvesterhci.io/ippool-namespace": "default",
            "network.harvesterhci.io/ippool-name": "net-48"}},
        "spec": {"config": "{}"}})
}

#[tokio::test]
async fn a_refused_agent_pod_is_reported_and_the_rest_of_the_status_is_written() {
    const REFUSAL: &str = "pods \"default-net-48-agent\" is forbidden: error looking up service account harvester-system/agent: serviceaccount \"agent\" not found";
    let (service, handle): (_, Handle) = tower_test::mock::pair();
    let ctx = context(Client::new(service, "default"));
    let pool: IPPool = serde_json::from_value(pool_json("5", &json!({}))).expect("pool");
    let server = tokio::spawn(serve_all(handle, |method, path, sent| {
        match (method, path) {
            ("GET", NAD_PATH) => respond(StatusCode::OK, &labelled_nad()),
            ("GET", AGENT_PATH) => respond(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", "pods \"default-net-48-agent\" not found"),
            ),
            ("POST", "/api/v1/namespaces/harvester-system/pods") => {
                respond(StatusCode::FORBIDDEN, &status(403, "Forbidden", REFUSAL))
            }
            ("POST", p) if p.ends_with("/events") => respond(StatusCode::CREATED, sent),
            ("PUT", p) if p.ends_with("/ippools/net-48/status") => respond(StatusCode::OK, sent),
            other => panic!("unexpected call {other:?}"),
        }
    }));
    let outcome = vmdhcp_controller::reconcile::ippool::reconcile(Arc::new(pool), ctx).await;
    let calls = server.await.expect("mock server");
    let failed = outcome.expect_err("a refused agent retries with the pool's backoff");
    assert!(failed.to_string().contains(REFUSAL), "{failed}");

    let (_, _, written) = calls
        .iter()
        .find(|(m, p, _)| m == "PUT" && p.ends_with("/status"))
        .expect("the status is written despite the refusal");
    assert_eq!(
        written["status"]["agentPodRef"],
        Value::Null,
        "no reference to a pod that does not exist"
    );
    let condition = |type_: &str| {
        written["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_owned(),
                    c["reason"].as_str().unwrap_or_default().to_owned(),
                    c["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
    };
    assert_eq!(
        condition("Registered"),
        Some(("False".into(), "Error".into(), REFUSAL.into()))
    );
    assert_eq!(
        condition("AgentReady"),
        Some((
            "False".into(),
            "Error".into(),
            "agent for ippool default/net-48 is not deployed".into()
        ))
    );
    assert_eq!(
        condition("CacheReady"),
        Some(("True".into(), String::new(), String::new()))
    );
    assert_eq!(written["status"]["ipv4"]["available"], 10);
    let warning = calls
        .iter()
        .find(|(m, p, e)| m == "POST" && p.ends_with("/events") && e["type"] == "Warning")
        .map(|(_, _, e)| e.clone())
        .expect("a Warning Event on the pool");
    assert_eq!(warning["reason"], "AgentDeployFailed");
    assert_eq!(warning["regarding"]["kind"], "IPPool");
    assert!(
        warning["note"]
            .as_str()
            .is_some_and(|n| n.contains(REFUSAL)),
        "{warning}"
    );
}

#[tokio::test]
async fn a_conflict_while_unlabelling_the_nad_keeps_the_finalizer() {
    let (service, handle): (_, Handle) = tower_test::mock::pair();
    let ctx = context(Client::new(service, "default"));
    let mut pool = pool_json("5", &json!({}));
    pool["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let pool: IPPool = serde_json::from_value(pool).expect("pool");
    let server = tokio::spawn(serve_all(handle, |method, path, _| match (method, path) {
        ("DELETE", AGENT_PATH) => respond(
            StatusCode::NOT_FOUND,
            &status(404, "NotFound", "pods \"default-net-48-agent\" not found"),
        ),
        ("GET", NAD_PATH) => respond(StatusCode::OK, &labelled_nad()),
        // Someone else (Harvester's network controller) wrote the NAD in between.
        ("PUT", NAD_PATH) => respond(
            StatusCode::CONFLICT,
            &status(
                409,
                "Conflict",
                "Operation cannot be fulfilled on network-attachment-definitions.k8s.cni.cncf.io \"net-48\": the object has been modified; please apply your changes to the latest version and try again",
            ),
        ),
        other => panic!("unexpected call {other:?}: the finalizer must stay"),
    }));
    let outcome = vmdhcp_controller::reconcile::ippool::reconcile(Arc::new(pool), ctx).await;
    let calls = server.await.expect("mock server");
    let failed = outcome.expect_err("an error keeps the finalizer for the retry");
    assert!(failed.is_conflict(), "{failed}");
    let (_, _, put) = calls
        .iter()
        .find(|(m, p, _)| m == "PUT" && p == NAD_PATH)
        .expect("the NAD update");
    assert_eq!(
        put["metadata"]["labels"],
        json!({"network.harvesterhci.io/clusternetwork": "mgmt"}),
        "the back-labels are what is removed"
    );
    assert!(
        calls.iter().all(|(_, p, _)| !p.contains("/ippools/")),
        "the pool is left as it is: {calls:?}"
    );
}
