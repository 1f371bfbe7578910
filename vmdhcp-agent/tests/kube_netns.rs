//! Kubernetes mode end to end without a cluster: the agent watches its IPPool on the
//! in-memory API server the controller's tests use (`vmdhcp-controller/tests/fake_api`, which
//! streams watches and keeps resourceVersions like the real one), serves DHCP in one network
//! namespace, and busybox udhcpc asks from another. The test plays the controller: it writes
//! `status.ipv4.allocated`, moves the address, edits the options and deletes the pool.
//! Needs root and udhcpc; without them it prints why it skips.

#[path = "../../vmdhcp-controller/tests/fake_api/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with the controller's tests, which use more of it"
)]
mod fake_api;

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vmdhcp_agent::{Agent, Dhcp, Source};
use vmdhcp_examples::client::udhcpc_once;
use vmdhcp_examples::netns::{self, SERVER_IF, Topology};

const POOL: &str = "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools/net-48";
const POOLS: &str = "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools";
const MAC: &str = "02:00:00:98:00:01";

fn skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipping: {reason}");
}

/// What the controller writes: `ip` allocated to the client's MAC.
fn allocate(pool: &mut Value, ip: &str) {
    pool["status"] = json!({"ipv4": {"allocated": {ip: MAC}, "used": 1, "available": 49}});
}

async fn lease(t: &Topology) -> Option<vmdhcp_examples::client::Got> {
    let udhcpc = netns::find("udhcpc")?;
    udhcpc_once(t, &udhcpc).await.ok()
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_what_the_status_says_follows_changes_and_stops_with_the_pool() {
    if let Some(reason) = netns::unsupported() {
        return skip(&reason);
    }
    if netns::find("udhcpc").is_none() {
        return skip("udhcpc (busybox) is not installed");
    }
    let (client, fake) = fake_api::start();
    fake.create(
        POOLS,
        json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net-48", "namespace": "default"},
            "spec": {"networkName": "default/net-48", "ipv4Config": {
                "serverIP": "10.98.0.1", "cidr": "10.98.0.0/24", "router": "10.98.0.1",
                "dns": ["10.98.0.53"], "domainName": "kube.test", "leaseTime": 600,
                "pool": {"start": "10.98.0.50", "end": "10.98.0.99"}}}
        }),
    );
    fake.modify(POOL, |pool| allocate(pool, "10.98.0.60"));

    let t = Topology::create("vmdhcp-agent-kube")
        .expect("namespaces")
        .quiet();
    let socket = t
        .bind_server(&dhcp_server::SocketConfig::new().interface(SERVER_IF))
        .expect("DHCP socket in the server namespace");
    let agent = Agent::new(
        Source::Kube {
            client,
            namespace: "default".into(),
            name: "net-48".into(),
        },
        Dhcp::Socket(socket),
    );
    let served = agent.served.clone();
    let stop = CancellationToken::new();
    let running = tokio::spawn(agent.run(stop.clone()));

    // The initial list fills the table: a lease right away.
    tokio::time::timeout(Duration::from_secs(10), served.configured())
        .await
        .expect("synced");
    let got = lease(&t).await.expect("a lease from the initial list");
    assert_eq!(
        (
            got.address.as_str(),
            got.dns.as_str(),
            got.domain.as_str(),
            got.lease_secs.as_str()
        ),
        ("10.98.0.60", "10.98.0.53", "kube.test", "600")
    );

    // The controller moves the address and the user edits the DNS: the next lease has both.
    fake.modify(POOL, |pool| {
        allocate(pool, "10.98.0.61");
        pool["spec"]["ipv4Config"]["dns"] = json!(["10.98.0.54"]);
    });
    until("the move to reach the table", || {
        served
            .table()
            .iter()
            .any(|(_, ip)| ip.to_string() == "10.98.0.61")
    })
    .await;
    let got = lease(&t).await.expect("a lease after the move");
    assert_eq!(
        (got.address.as_str(), got.dns.as_str()),
        ("10.98.0.61", "10.98.0.54")
    );

    // The pool is deleted: no more answers.
    assert_eq!(fake.delete(POOL), 200);
    until("the table to empty", || served.table().is_empty()).await;
    assert!(
        lease(&t).await.is_none(),
        "a deleted pool must not be served"
    );

    stop.cancel();
    running
        .await
        .expect("agent task")
        .expect("agent ran cleanly");
}
