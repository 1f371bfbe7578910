//! A DHCP server and a real client, each in its own network namespace, joined by a veth
//! pair, in one command: the `dhcp-server` library hands a static lease to busybox `udhcpc`
//! (or, when udhcpc is not installed, to a small client built into this example), and the
//! example prints the lease the client got.
//!
//! Run (root: network namespaces need `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`):
//!
//! ```sh
//! cargo build -p vmdhcp-examples --example dhcp_veth
//! sudo target/debug/examples/dhcp_veth            # or, as root: cargo run -p vmdhcp-examples --example dhcp_veth
//! sudo target/debug/examples/dhcp_veth --builtin-client   # skip udhcpc
//! sudo target/debug/examples/dhcp_veth --keep     # keep serving until Ctrl-C, to try other clients
//! ```
//!
//! It creates `vmdhcp-demo-<pid>-srv` and `vmdhcp-demo-<pid>-cli` and removes them, with
//! anything running inside, when it ends: on success, on error and on Ctrl-C. Only private
//! addresses inside those two namespaces are used; nothing leaves the machine.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use dhcp_server::{
    Config, ConfigHandle, Lease, LeaseTime, MacAddr, Server, SocketConfig, StaticLeases,
};
use tokio_util::sync::CancellationToken;
use vmdhcp_examples::client::get_lease;
use vmdhcp_examples::netns::{CLIENT_IF, CLIENT_MAC, Result, SERVER_ADDR, SERVER_IF, Topology};

const DNS: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 53);
const LEASED: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 50);

fn main() -> ExitCode {
    vmdhcp_examples::demo::run("dhcp_veth", "vmdhcp-demo", 1, async |t, flags, stop| {
        demo(t, flags.builtin_client, flags.keep, stop).await
    })
}

/// Serves, runs the client and prints the lease; `stop` (a signal) ends it early, or, with
/// `keep`, ends the serving that follows.
async fn demo(
    t: &Topology,
    builtin: bool,
    keep: bool,
    stop: impl Future<Output = &'static str>,
) -> Result<()> {
    tokio::pin!(stop);
    // What the server hands out: the MAC of the client's veth end gets LEASED.
    let config = Config::builder(SERVER_ADDR, "10.98.0.0/24".parse()?)
        .routers([SERVER_ADDR])
        .dns([DNS])
        .domain_name("demo.test")
        .lease_time(LeaseTime::from_secs(3600))
        .build()?;
    let leases: StaticLeases = [(MacAddr::new(CLIENT_MAC), Lease::new(LEASED))]
        .into_iter()
        .collect();
    let socket = t.bind_server(&SocketConfig::new().interface(SERVER_IF))?;
    println!(
        "server: {} -> {LEASED} on {SERVER_IF} ({})",
        MacAddr::new(CLIENT_MAC),
        socket.local_addr()
    );
    let (tx, mut events) = tokio::sync::mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(
        Server::new(ConfigHandle::new(config), leases)
            .with_events(tx)
            .run(socket, shutdown.clone()),
    );
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            println!("server event: {event}");
        }
    });

    let client = get_lease(t, builtin);
    let lease = tokio::select! {
        got = client => got?,
        why = &mut stop => return Err(why.into()),
    };
    // Let the ACK's event be printed before the lease.
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!("lease: {lease}");

    if keep {
        println!(
            "serving until Ctrl-C; try: ip netns exec {} udhcpc -f -q -i {CLIENT_IF}",
            t.client
        );
        println!("{}", stop.await);
    }
    shutdown.cancel();
    server.await??;
    Ok(())
}
