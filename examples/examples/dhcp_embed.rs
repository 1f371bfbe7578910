//! Embedding `dhcp-server`: bind a socket, run the server with a live configuration and a
//! static lease table, change both while it runs, and watch its events.
//!
//! ```sh
//! # Unprivileged, on loopback: asks itself for a lease before and after the change, the way a
//! # relay agent would (replies go to the relay's port, so no port below 1024 is needed).
//! cargo run -p vmdhcp-examples --example dhcp_embed
//!
//! # Real clients on an interface that owns SERVER (port 67: root or CAP_NET_BIND_SERVICE);
//! # serves MAC -> ADDR for a minute and changes the DNS server after 20 s.
//! sudo target/debug/examples/dhcp_embed eth1 192.168.48.1/24 ca:70:82:e6:84:6e 192.168.48.84
//! ```

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcp_server::{
    Config, ConfigHandle, DhcpSocket, Lease, LeaseTime, MacAddr, Server, SocketConfig, StaticLeases,
};
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// What to serve: on loopback, a made-up VM; otherwise the command line.
struct Setup {
    interface: Option<String>,
    server: Ipv4Addr,
    /// `SERVER/PREFIX`, parsed where the config builder wants it.
    subnet: String,
    mac: MacAddr,
    addr: Ipv4Addr,
}

fn setup() -> Result<Setup> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(Setup {
            interface: None,
            server: Ipv4Addr::LOCALHOST,
            subnet: "127.0.0.0/8".into(),
            mac: "02:00:00:00:00:01".parse()?,
            addr: Ipv4Addr::new(127, 0, 0, 50),
        }),
        [interface, cidr, mac, addr] => {
            let (server, _) = cidr
                .split_once('/')
                .ok_or("SERVER/PREFIX, e.g. 192.168.48.1/24")?;
            Ok(Setup {
                interface: Some(interface.clone()),
                server: server.parse()?,
                subnet: cidr.clone(),
                mac: mac.parse()?,
                addr: addr.parse()?,
            })
        }
        _ => Err("usage: dhcp_embed [INTERFACE SERVER/PREFIX MAC ADDR]".into()),
    }
}

/// The served subnet's options. Built again, with other values, whenever they change.
fn build_config(s: &Setup, dns: Ipv4Addr) -> Result<Config> {
    Ok(Config::builder(s.server, s.subnet.parse()?)
        .routers([s.server])
        .dns([dns])
        .domain_name("vm.example")
        .lease_time(LeaseTime::from_secs(3600))
        .build()?)
}

fn main() -> Result<()> {
    let s = setup()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(&s))
}

async fn run(s: &Setup) -> Result<()> {
    // On loopback this example plays the relay agent too; the server sends it replies.
    let relay = UdpSocket::bind("127.0.0.1:0").await?;
    let socket = match &s.interface {
        Some(interface) => SocketConfig::new().interface(interface.clone()),
        None => SocketConfig::new()
            .bind_addr("127.0.0.1:0".parse()?)
            .relay_port(relay.local_addr()?.port()),
    };
    let socket = DhcpSocket::bind(&socket)?;
    let server_at = socket.local_addr();
    println!("serving {} -> {} on {server_at}", s.mac, s.addr);
    // Loopback: this example's own requests show each change; an interface: real clients do.
    let self_test = s.interface.is_none().then_some(server_at);

    let config = ConfigHandle::new(build_config(s, s.server)?);
    let leases = StaticLeases::new();
    leases.insert(s.mac, Lease::new(s.addr).with_hostname("vm-1"));

    let (events, mut event_rx) = tokio::sync::mpsc::channel(1024);
    let printer = tokio::spawn(async move {
        while let Some(event) = event_rx.recv().await {
            println!("event: {event}");
        }
    });
    let shutdown = CancellationToken::new();
    let server = Server::new(config.clone(), leases.clone()).with_events(events);
    let task = tokio::spawn(server.run(socket, shutdown.clone()));

    if let Some(to) = self_test {
        ask(&relay, to, s.mac, 1).await?;
    } else {
        wait(Duration::from_secs(20)).await;
    }

    // The network changed: other options and another address for the VM, no restart. The
    // next reply uses them.
    let dns = Ipv4Addr::from(u32::from(s.server) + 52);
    config.store(build_config(s, dns)?);
    let moved = Ipv4Addr::from(u32::from(s.addr) + 1);
    leases.replace([(s.mac, Lease::new(moved).with_hostname("vm-1"))]);
    println!("changed: DNS server {dns}, {} -> {moved}", s.mac);

    if let Some(to) = self_test {
        ask(&relay, to, s.mac, 2).await?;
    } else {
        wait(Duration::from_secs(40)).await;
    }

    shutdown.cancel();
    let leases = task.await??;
    // The server dropped its sender: the printer ends after the last event.
    printer.await?;
    println!("stopped; the lease table has {} entries", leases.len());
    Ok(())
}

/// Serves real clients for `d`, or until Ctrl-C.
async fn wait(d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A DISCOVER relayed from `relay` for `mac`; prints what the OFFER says.
async fn ask(relay: &UdpSocket, to: SocketAddrV4, mac: MacAddr, xid: u32) -> Result<()> {
    let giaddr = match relay.local_addr()? {
        std::net::SocketAddr::V4(a) => *a.ip(),
        std::net::SocketAddr::V6(_) => return Err("the relay socket is IPv4".into()),
    };
    let z = Ipv4Addr::UNSPECIFIED;
    let mut discover = Message::new_with_id(xid, z, z, z, giaddr, &mac.octets());
    discover.set_hops(1);
    discover
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    discover
        .opts_mut()
        .insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
        ]));
    relay.send_to(&discover.to_vec()?, to).await?;
    let mut buf = vec![0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(2), relay.recv(&mut buf)).await??;
    let offer = Message::decode(&mut Decoder::new(&buf[..n]))?;
    let dns = match offer.opts().get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(d)) => format!("{d:?}"),
        _ => "-".into(),
    };
    println!("client {mac}: offered {}, DNS {dns}", offer.yiaddr());
    Ok(())
}
