//! The main demo: `vmdhcp-agent` in standalone mode serves an IPPool YAML file — the same
//! objects a user would `kubectl apply`, no Kubernetes anywhere — to a real DHCP client across
//! a veth pair between two network namespaces, and the example prints the lease the client got.
//!
//! The file holds an IPPool and a VirtualMachineNetworkConfig for the client's MAC; the agent
//! allocates the VM its address with `ipam` (the lowest free one, `10.98.0.50`) and answers with
//! the pool's router, DNS, domain and lease time.
//!
//! Run (root: network namespaces need `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`):
//!
//! ```sh
//! cargo run -p vmdhcp-examples --example agent_veth                 # as root
//! sudo target/debug/examples/agent_veth --builtin-client   # skip udhcpc
//! sudo target/debug/examples/agent_veth --keep             # keep serving; edit the file live
//! ```
//!
//! It creates `vmdhcp-agent-demo-<pid>-srv` and `…-cli` and removes them, with anything running
//! inside, when it ends: on success, on error and on Ctrl-C. Only private addresses inside those
//! two namespaces are used; nothing leaves the machine.

use std::process::ExitCode;
use std::time::Duration;

use dhcp_server::{MacAddr, SocketConfig};
use tokio_util::sync::CancellationToken;
use vmdhcp_agent::{Agent, Dhcp, Source};
use vmdhcp_examples::client::get_lease;
use vmdhcp_examples::netns::{CLIENT_IF, CLIENT_MAC, Result, SERVER_IF, Topology};

/// The file the agent serves: `{mac}` is the client's MAC.
const POOL_YAML: &str = "\
apiVersion: network.harvesterhci.io/v1alpha1
kind: IPPool
metadata:
  name: demo-net
  namespace: default
spec:
  networkName: default/demo-net
  ipv4Config:
    serverIP: 10.98.0.1
    cidr: 10.98.0.0/24
    pool:
      start: 10.98.0.50
      end: 10.98.0.99
    router: 10.98.0.1
    dns:
      - 10.98.0.53
    domainName: demo.test
    leaseTime: 3600
---
apiVersion: network.harvesterhci.io/v1alpha1
kind: VirtualMachineNetworkConfig
metadata:
  name: demo-vm
  namespace: default
spec:
  vmName: demo-vm
  networkConfigs:
    - networkName: default/demo-net
      macAddress: {mac}
";

fn main() -> ExitCode {
    // The agent's own log lines (loaded, allocated, offered, acked) are part of the demo.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .init();
    vmdhcp_examples::demo::run(
        "agent_veth",
        "vmdhcp-agent-demo",
        2,
        async |t, flags, stop| demo(t, flags.builtin_client, flags.keep, stop).await,
    )
}

/// Writes the pool file, starts the agent on it, runs the client and prints the lease.
async fn demo(
    t: &Topology,
    builtin: bool,
    keep: bool,
    stop: impl Future<Output = &'static str>,
) -> Result<()> {
    tokio::pin!(stop);
    let file = t.scratch.join("ippool.yaml");
    let mac = MacAddr::new(CLIENT_MAC).to_string();
    std::fs::write(&file, POOL_YAML.replace("{mac}", &mac))?;
    println!(
        "agent: standalone, --ippool-file {} --nic {SERVER_IF}",
        file.display()
    );

    let socket = t.bind_server(&SocketConfig::new().interface(SERVER_IF))?;
    let agent = Agent::new(Source::File(file.clone()), Dhcp::Socket(socket));
    let served = agent.served.clone();
    let shutdown = CancellationToken::new();
    let mut running = tokio::spawn(agent.run(shutdown.clone()));
    // The file is loaded before the agent answers; a bad file ends `run` at once.
    tokio::select! {
        _ = served.configured() => {}
        ended = &mut running => return Err(format!("the agent stopped: {:?}", ended?).into()),
    }

    let client = get_lease(t, builtin);
    let lease = tokio::select! {
        got = client => got?,
        why = &mut stop => return Err(why.into()),
        ended = &mut running => return Err(format!("the agent stopped: {:?}", ended?).into()),
    };
    // Let the agent log the ACK before the lease is printed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!("lease: {lease}");

    if keep {
        println!(
            "serving until Ctrl-C. Edit {} (the agent reloads it within a second), then ask \
             again: ip netns exec {} udhcpc -f -q -i {CLIENT_IF}",
            file.display(),
            t.client
        );
        println!("{}", stop.await);
    }
    shutdown.cancel();
    running.await??;
    Ok(())
}
