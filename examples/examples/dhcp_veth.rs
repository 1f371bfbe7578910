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

use std::error::Error;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use dhcp_server::{
    Config, ConfigHandle, DhcpSocket, Lease, LeaseTime, MacAddr, Server, SocketConfig, StaticLeases,
};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

const SERVER_IF: &str = "demo-srv";
const CLIENT_IF: &str = "demo-cli";
const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 53);
const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x98, 0x00, 0x01];
const LEASED: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 50);

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let builtin = args.iter().any(|a| a == "--builtin-client");
    let keep = args.iter().any(|a| a == "--keep");
    if let Some(other) = args
        .iter()
        .find(|a| !matches!(a.as_str(), "--builtin-client" | "--keep"))
    {
        eprintln!("unknown argument {other}; usage: dhcp_veth [--builtin-client] [--keep]");
        return ExitCode::from(2);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "dhcp_veth needs root: it creates network namespaces and a veth pair \
             (CAP_SYS_ADMIN, CAP_NET_ADMIN). Run it with sudo, e.g.\n  \
             sudo {}",
            std::env::args()
                .next()
                .unwrap_or_else(|| "dhcp_veth".into())
        );
        return ExitCode::FAILURE;
    }
    if find("ip").is_none() {
        eprintln!("dhcp_veth needs the `ip` command (Debian package iproute2)");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The topology lives outside the async part, so it is removed whichever way that ends.
    let topology = match Topology::create() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot create the namespaces: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let stop = async {
            tokio::select! {
                _ = interrupt.recv() => "interrupted",
                _ = terminate.recv() => "terminated",
            }
        };
        demo(&topology, builtin, keep, stop).await
    });
    // Dropping the runtime ends the server task and kills a client still running.
    drop(runtime);
    drop(topology);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dhcp_veth: {e}");
            ExitCode::FAILURE
        }
    }
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

    let udhcpc = if builtin { None } else { find("udhcpc") };
    let client = async {
        if let Some(udhcpc) = udhcpc {
            println!("client: {} in {}", udhcpc.display(), t.client);
            run_udhcpc(t, &udhcpc).await
        } else {
            println!("client: built-in (dhcproto over UDP) in {}", t.client);
            builtin_client(t).await
        }
    };
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

/// What a client reported.
#[derive(Debug, Default)]
struct Got {
    address: String,
    mask: String,
    router: String,
    dns: String,
    domain: String,
    lease_secs: String,
    server: String,
}

impl std::fmt::Display for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "address {} mask {} router {} dns {} domain {} lease time {} s server {}",
            self.address,
            self.mask,
            self.router,
            self.dns,
            self.domain,
            self.lease_secs,
            self.server
        )
    }
}

/// udhcpc runs its script with the lease in the environment; the script only prints it (the
/// interface stays unconfigured).
const UDHCPC_SCRIPT: &str = "#!/bin/sh\n[ \"$1\" = bound ] && echo \"bound|$ip|$subnet|$router|$dns|$domain|$lease|$serverid\"\nexit 0\n";

async fn run_udhcpc(t: &Topology, udhcpc: &std::path::Path) -> Result<Got> {
    let script = t.scratch.join("udhcpc.sh");
    fs::write(&script, UDHCPC_SCRIPT)?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
    // Foreground, quit once bound, fail after 5 one-second tries.
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", &t.client])
        .arg(udhcpc)
        .args([
            "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", CLIENT_IF, "-s",
        ])
        .arg(&script)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("bound|"))
        .ok_or_else(|| {
            format!(
                "udhcpc got no lease ({}):\n{}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let f: Vec<&str> = line.split('|').collect();
    let get = |i: usize| f.get(i).copied().unwrap_or_default().to_owned();
    Ok(Got {
        address: get(0),
        mask: get(1),
        router: get(2),
        dns: get(3),
        domain: get(4),
        lease_secs: get(5),
        server: get(6),
    })
}

/// A minimal DHCP client: DISCOVER, OFFER, REQUEST, ACK over a UDP socket on port 68 bound
/// to the client's interface. The interface has no address yet, so requests leave from
/// 0.0.0.0 to 255.255.255.255, with the broadcast flag set so the reply comes back broadcast.
async fn builtin_client(t: &Topology) -> Result<Got> {
    let sock = t.in_client(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        s.bind_device(Some(CLIENT_IF.as_bytes()))?;
        s.set_broadcast(true)?;
        s.set_nonblocking(true)?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())?;
        Ok(std::net::UdpSocket::from(s))
    })?;
    let sock = tokio::net::UdpSocket::from_std(sock)?;
    let server = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let xid = std::process::id();

    let mut discover = client_message(xid, MessageType::Discover);
    discover
        .opts_mut()
        .insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::DomainName,
        ]));
    let offer = exchange(&sock, server, &discover, MessageType::Offer).await?;
    let server_id = match offer.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(id)) => *id,
        _ => return Err("the OFFER has no server identifier".into()),
    };
    let mut request = client_message(xid, MessageType::Request);
    request
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    request
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(server_id));
    if let Some(prl) = discover.opts().get(OptionCode::ParameterRequestList) {
        request.opts_mut().insert(prl.clone());
    }
    let ack = exchange(&sock, server, &request, MessageType::Ack).await?;

    let addrs = |code| match ack.opts().get(code) {
        Some(DhcpOption::Router(a) | DhcpOption::DomainNameServer(a)) => a
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let mut got = Got {
        address: ack.yiaddr().to_string(),
        router: addrs(OptionCode::Router),
        dns: addrs(OptionCode::DomainNameServer),
        server: server_id.to_string(),
        ..Got::default()
    };
    for opt in ack.opts().iter().map(|(_, o)| o) {
        match opt {
            DhcpOption::SubnetMask(m) => got.mask = m.to_string(),
            DhcpOption::DomainName(d) => got.domain.clone_from(d),
            DhcpOption::AddressLeaseTime(s) => got.lease_secs = s.to_string(),
            _ => {}
        }
    }
    Ok(got)
}

fn client_message(xid: u32, kind: MessageType) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, z, z, z, z, &CLIENT_MAC);
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m
}

/// Sends `m` up to 4 times, a second apart, until a reply of type `want` with its xid comes.
async fn exchange(
    sock: &tokio::net::UdpSocket,
    to: SocketAddrV4,
    m: &Message,
    want: MessageType,
) -> Result<Message> {
    let bytes = m.to_vec()?;
    let mut buf = vec![0u8; 1500];
    for _ in 0..4 {
        sock.send_to(&bytes, to).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(received) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..received?])) else {
                continue;
            };
            if reply.xid() == m.xid() && reply.opts().msg_type() == Some(want) {
                return Ok(reply);
            }
        }
    }
    Err(format!("no {want:?} after 4 tries").into())
}

/// The two namespaces, the veth pair between them and a scratch directory; `Drop` removes
/// them and ends anything still running inside.
struct Topology {
    server: String,
    client: String,
    scratch: PathBuf,
}

impl Topology {
    fn create() -> Result<Self> {
        let name = format!("vmdhcp-demo-{}", std::process::id());
        let t = Self {
            server: format!("{name}-srv"),
            client: format!("{name}-cli"),
            scratch: std::env::temp_dir().join(&name),
        };
        // From here on, `Drop` removes whatever part got created if a later step fails.
        fs::create_dir_all(&t.scratch)?;
        let mac = MacAddr::new(CLIENT_MAC).to_string();
        ip(&["netns", "add", &t.server])?;
        ip(&["netns", "add", &t.client])?;
        ip(&[
            "link", "add", SERVER_IF, "netns", &t.server, "type", "veth", "peer", "name",
            CLIENT_IF, "netns", &t.client,
        ])?;
        ip(&["-n", &t.client, "link", "set", CLIENT_IF, "address", &mac])?;
        ip(&[
            "-n",
            &t.server,
            "addr",
            "add",
            &format!("{SERVER_ADDR}/24"),
            "dev",
            SERVER_IF,
        ])?;
        for (ns, dev) in [
            (&t.server, SERVER_IF),
            (&t.client, CLIENT_IF),
            (&t.server, "lo"),
            (&t.client, "lo"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        println!(
            "created netns {} ({SERVER_IF} {SERVER_ADDR}/24) and {} ({CLIENT_IF} {mac}, no address)",
            t.server, t.client
        );
        Ok(t)
    }

    /// Runs `f` on a thread that joined the client namespace: sockets it creates stay there.
    fn in_client<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        in_netns(&self.client, f)
    }

    fn bind_server(&self, config: &SocketConfig) -> Result<DhcpSocket> {
        let config = config.clone();
        in_netns(&self.server, move || {
            DhcpSocket::bind(&config).map_err(std::io::Error::other)
        })
    }
}

fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    let path = PathBuf::from("/run/netns").join(ns);
    let joined = std::thread::spawn(move || {
        let file = fs::File::open(&path)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        f()
    })
    .join()
    .map_err(|_| "namespace thread panicked")?;
    Ok(joined?)
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&self.scratch);
        println!("removed netns {} and {}", self.server, self.client);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into())
    }
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir: &str| PathBuf::from(dir).join(program))
        .find(|p| p.is_file())
}
