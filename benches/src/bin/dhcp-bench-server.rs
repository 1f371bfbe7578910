//! The `dhcp-server` library as the perfdhcp harness (`benches/perfdhcp/run.sh`) runs it: one
//! socket bound to one interface, one current-thread tokio runtime (the harness pins the
//! process to one core), and either perfdhcp's clients as static leases or a dynamic pool.
//!
//! ```sh
//! cargo build --release -p vmdhcp-benches --bin dhcp-bench-server
//! ip netns exec srv taskset -c 1 target/release/dhcp-bench-server --interface veth-srv \
//!     --leases static --clients 10000
//! ```
//!
//! Options (defaults match the Kea and dnsmasq configs in `benches/perfdhcp/conf/`):
//! `--interface IF` (none: all interfaces), `--server-id 10.99.0.1`, `--subnet 10.99.0.0/16`,
//! `--first 10.99.0.10`, `--last 10.99.255.250`, `--leases static|dynamic`, `--clients 10000`
//! (static: perfdhcp's first N MACs get `first + i`), `--mac-base 00:0c:01:02:03:04`,
//! `--events` (consume an event channel, as an embedding agent would), `--recv-buffer BYTES`
//! (`SO_RCVBUF`; default: the kernel's, as the other servers get), `--batch N` (datagrams per
//! `recvmmsg`, 1..=32, default 32; 1 = batching off, the A/B baseline).
//! Stops on SIGINT or SIGTERM and prints what it served.

use std::error::Error;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dhcp_server::{
    Config, ConfigHandle, DhcpSocket, DynamicPool, Lease, LeaseSource, LeaseTime, MacAddr, Server,
    SocketConfig, StaticLeases,
};
use ipnet::Ipv4Net;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use vmdhcp_benches::perfdhcp;

#[derive(Debug)]
struct Args {
    interface: Option<String>,
    server_id: Ipv4Addr,
    subnet: Ipv4Net,
    first: Ipv4Addr,
    last: Ipv4Addr,
    dynamic: bool,
    clients: u32,
    mac_base: MacAddr,
    events: bool,
    recv_buffer: Option<usize>,
    batch: usize,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut a = Args {
        interface: None,
        server_id: Ipv4Addr::new(10, 99, 0, 1),
        subnet: "10.99.0.0/16".parse()?,
        first: Ipv4Addr::new(10, 99, 0, 10),
        last: Ipv4Addr::new(10, 99, 255, 250),
        dynamic: false,
        clients: 10_000,
        mac_base: MacAddr::new(perfdhcp::DEFAULT_BASE),
        events: false,
        // The kernel default, as Kea and dnsmasq get in the same run.
        recv_buffer: None,
        batch: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--events" {
            a.events = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--interface" => a.interface = Some(value),
            "--server-id" => a.server_id = value.parse()?,
            "--subnet" => a.subnet = value.parse()?,
            "--first" => a.first = value.parse()?,
            "--last" => a.last = value.parse()?,
            "--leases" => {
                a.dynamic = match value.as_str() {
                    "static" => false,
                    "dynamic" => true,
                    other => return Err(format!("--leases static|dynamic, not {other}").into()),
                }
            }
            "--clients" => a.clients = value.parse()?,
            "--mac-base" => a.mac_base = value.parse()?,
            "--recv-buffer" => a.recv_buffer = Some(value.parse()?),
            "--batch" => a.batch = value.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(a)
}

fn config(a: &Args) -> Result<Config, dhcp_server::Error> {
    Config::builder(a.server_id, a.subnet)
        .routers([a.server_id])
        .dns([a.server_id])
        .domain_name("bench.test")
        .lease_time(LeaseTime::from_secs(3600))
        .authoritative(true)
        .build()
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let mut socket = SocketConfig::new();
    if let Some(bytes) = args.recv_buffer {
        socket = socket.recv_buffer_size(bytes);
    }
    if let Some(interface) = &args.interface {
        socket = socket.interface(interface.clone());
    }
    let socket = DhcpSocket::bind(&socket)?;
    let config = ConfigHandle::new(config(&args)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.dynamic {
        let mut pool = ipam::Pool::new(args.subnet, args.first, args.last)?;
        pool.reserve(args.server_id)?;
        let capacity = pool.capacity();
        println!(
            "serving a dynamic pool {}-{} ({capacity} addresses) on {}",
            args.first,
            args.last,
            socket.local_addr()
        );
        runtime.block_on(serve(&args, socket, config, DynamicPool::new(pool)))?;
    } else {
        let first = u32::from(args.first);
        if u64::from(first) + u64::from(args.clients) > u64::from(u32::from(args.last)) + 1 {
            return Err(format!(
                "{} clients do not fit {}-{}",
                args.clients, args.first, args.last
            )
            .into());
        }
        let leases: StaticLeases =
            perfdhcp::static_assignments(args.mac_base.octets(), args.clients, args.first)
                .into_iter()
                .map(|(mac, addr)| (MacAddr::new(mac), Lease::new(addr)))
                .collect();
        println!(
            "serving {} static leases (perfdhcp MACs from {}) on {}",
            leases.len(),
            args.mac_base,
            socket.local_addr()
        );
        runtime.block_on(serve(&args, socket, config, leases))?;
    }
    Ok(())
}

async fn serve<L: LeaseSource + Send + 'static>(
    args: &Args,
    socket: DhcpSocket,
    config: ConfigHandle,
    leases: L,
) -> Result<(), Box<dyn Error>> {
    let shutdown = CancellationToken::new();
    let mut server = Server::new(config, leases).with_batch_size(args.batch);
    let counted = Arc::new(AtomicU64::new(0));
    if args.events {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
        server = server.with_events(tx);
        let counted = Arc::clone(&counted);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let task = tokio::spawn(server.run(socket, shutdown.clone()));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    println!("ready pid {}", std::process::id());
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shutdown.cancel();
    task.await??;
    if args.events {
        println!("events received: {}", counted.load(Ordering::Relaxed));
    }
    println!("stopped");
    Ok(())
}
