//! Address conflicts in standalone mode, end to end: the agent serves an IPPool file in one
//! network namespace; the built-in DHCP client (udhcpc cannot be made to decline) gets its
//! address from another across a veth pair, declines it, and is not offered it again until
//! the file no longer allocates it to that MAC. Needs root; without it the test says why it
//! skips.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vmdhcp_examples::client::{builtin_client, builtin_decline};
use vmdhcp_examples::netns::{self, SERVER_IF, Topology};

const MAC: &str = "02:00:00:98:00:01";
const WAIT: Duration = Duration::from_secs(30);

/// The pool file: `10.98.0.0/24`, server `10.98.0.1`, `MAC` at `addr`.
fn pool_yaml(addr: &str) -> String {
    format!(
        "\
apiVersion: network.harvesterhci.io/v1alpha1
kind: IPPool
metadata:
  name: net-test
  namespace: default
spec:
  networkName: default/net-test
  ipv4Config:
    serverIP: 10.98.0.1
    cidr: 10.98.0.0/24
    pool:
      start: 10.98.0.50
      end: 10.98.0.99
status:
  ipv4:
    allocated:
      {addr}: {MAC}
"
    )
}

fn write(path: &Path, text: &str) {
    // Written aside and renamed: the agent never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write the pool file");
    std::fs::rename(&tmp, path).expect("replace the pool file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_address_is_not_offered_again_until_the_file_moves_the_mac() {
    if let Some(reason) = netns::unsupported() {
        return vmdhcp_examples::prereq::unavailable(&reason);
    }
    let t = Topology::create("vmdhcp-conflict")
        .expect("network namespaces")
        .quiet();
    t.set_client_mac(MAC).expect("client MAC");
    let file = t.scratch.join("pool.yaml");
    write(&file, &pool_yaml("10.98.0.50"));
    let socket = t
        .bind_server(&dhcp_server::SocketConfig::new().interface(SERVER_IF))
        .expect("DHCP socket in the server namespace");
    let agent = vmdhcp_agent::Agent::new(
        vmdhcp_agent::Source::File(file.clone()),
        vmdhcp_agent::Dhcp::Socket(socket),
    );
    let served = agent.served.clone();
    let stop = CancellationToken::new();
    let running = tokio::spawn(agent.run(stop.clone()));

    let got = builtin_client(&t).await.expect("a lease");
    assert_eq!(got.address, "10.98.0.50");
    builtin_decline(&t, &got).await.expect("send the DECLINE");
    let mac: dhcp_server::MacAddr = MAC.parse().expect("MAC");
    let declined = "10.98.0.50".parse().expect("IP");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !served.leases().is_conflicted(mac, declined) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the DECLINE was not taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client asks again (four DISCOVERs): nobody offers it the declined address.
    let again = builtin_client(&t).await;
    assert!(
        again.is_err(),
        "the declined address was offered again: {again:?}"
    );
    assert!(served.leases().is_conflicted(mac, declined));

    // The operator moves the MAC in the file: the mark goes with the old entry.
    write(&file, &pool_yaml("10.98.0.51"));
    let deadline = tokio::time::Instant::now() + WAIT;
    let got = loop {
        if let Ok(got) = builtin_client(&t).await {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no lease after the file moved the MAC"
        );
    };
    assert_eq!(got.address, "10.98.0.51");
    assert!(served.leases().conflicts().is_empty());

    stop.cancel();
    running
        .await
        .expect("agent task")
        .expect("the agent ran cleanly");
}
