//! End to end with real DHCP clients: two network namespaces joined by a veth pair, our
//! server on one end (bound to the veth, port 67, broadcast replies), busybox `udhcpc`, ISC
//! `dhclient` and `dhcpcd` on the other. Each test creates and removes its own namespaces
//! (unique names, removed in `Drop` even on panic, with every process left in them killed).
//! Without root or without a client, a test prints `skipping: <reason>` and returns.
//!
//! Only private addresses inside our own namespaces are used: nothing leaves the machine.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dhcp_server::{
    Config, ConfigHandle, DhcpSocket, Event, EventKind, Lease, LeaseTime, MacAddr, Route, Server,
    SocketConfig, StaticLeases,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SERVER_IF: &str = "veth-s";
const CLIENT_IF: &str = "veth-c";
const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CLIENT_MAC: &str = "02:00:00:77:00:01";
const LEASED: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Prints why a test does not run. Never pass silently: written to the process's stderr
/// directly, not through `eprintln!`, which the test harness would capture and hide.
fn skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipping: {reason}");
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Why these tests cannot run here, if they cannot.
fn unsupported(tools: &[&str]) -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)".into());
    }
    tools
        .iter()
        .chain(&["ip"])
        .find(|t| find_tool(t).is_none())
        .map(|t| format!("{t} is not installed (scripts/install-test-deps.sh installs it)"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// Two namespaces, `<name>-s` (server, 10.77.0.1/24 on veth-s) and `<name>-c` (client,
/// veth-c with MAC `CLIENT_MAC`, no address), and a scratch directory.
struct Topology {
    server: String,
    client: String,
    dir: PathBuf,
}

impl Topology {
    fn create() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("vmdt{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        fs::create_dir_all(&dir).unwrap();
        let t = Self {
            server: format!("{name}-s"),
            client: format!("{name}-c"),
            dir,
        };
        // From here on `Drop` cleans up whatever got created.
        ip(&["netns", "add", &t.server]);
        ip(&["netns", "add", &t.client]);
        ip(&[
            "link", "add", SERVER_IF, "netns", &t.server, "type", "veth", "peer", "name",
            CLIENT_IF, "netns", &t.client,
        ]);
        ip(&[
            "-n", &t.client, "link", "set", CLIENT_IF, "address", CLIENT_MAC,
        ]);
        ip(&[
            "-n",
            &t.server,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            SERVER_IF,
        ]);
        for (ns, dev) in [
            (&t.server, SERVER_IF),
            (&t.client, CLIENT_IF),
            (&t.server, "lo"),
            (&t.client, "lo"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        t
    }

    fn in_client(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client, program]);
        c
    }

    fn in_server(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.server, program]);
        c
    }

    fn file(&self, name: &str, content: &str, executable: bool) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, content).unwrap();
        if executable {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        path
    }

    /// Binds the server socket inside the server namespace (a socket keeps the namespace it
    /// was created in), from a short-lived thread that joined it.
    fn bind_server(&self, config: &SocketConfig) -> Result<DhcpSocket, dhcp_server::Error> {
        let path = PathBuf::from("/run/netns").join(&self.server);
        let config = config.clone();
        std::thread::spawn(move || {
            let ns = fs::File::open(&path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            DhcpSocket::bind(&config)
        })
        .join()
        .unwrap()
    }

    fn set_tx_offload(&self, on: bool) {
        run(self
            .in_server("ethtool")
            .args(["-K", SERVER_IF, "tx", if on { "on" } else { "off" }]));
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            // Anything still running in the namespace is ours: end it, then remove it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A client process, killed (with its process group) when dropped.
struct Running(Child);

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        std::os::unix::process::CommandExt::process_group(cmd, 0);
        Self(cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")))
    }

    fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Waits until the process exits or `ready(stdout so far)` holds; then kills it and
    /// returns (stdout, stderr).
    fn until(self, ready: impl Fn(&str) -> bool) -> (String, String) {
        self.until_then(ready, None)
    }

    /// As [`until`](Self::until), but once ready sends `stop` and lets the process exit by
    /// itself (for a few seconds) before killing it.
    fn until_then(
        mut self,
        ready: impl Fn(&str) -> bool,
        stop: Option<nix::sys::signal::Signal>,
    ) -> (String, String) {
        use std::io::Read;
        let mut stdout = self.0.stdout.take().unwrap();
        let mut stderr = self.0.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut all = String::new();
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.push_str(&String::from_utf8_lossy(&buf[..n]));
                let _ = tx.send(all.clone());
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut deadline = Instant::now() + CLIENT_TIMEOUT;
        let mut seen = String::new();
        let mut stopping = false;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(s) => seen = s,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() > deadline {
                break;
            }
            if !stopping && ready(&seen) {
                let Some(signal) = stop else { break };
                let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
                let _ = nix::sys::signal::kill(pid, signal);
                stopping = true;
                deadline = Instant::now() + Duration::from_secs(5);
            }
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                // Exited: collect what is left.
                while let Ok(s) = rx.recv_timeout(Duration::from_millis(200)) {
                    seen = s;
                }
                break;
            }
        }
        self.kill();
        let _ = reader.join();
        let err = err_reader.join().unwrap_or_default();
        (seen, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The served configuration: every option the clients print.
fn config() -> Config {
    Config::builder(SERVER_ADDR, "10.77.0.0/24".parse().unwrap())
        .routers([SERVER_ADDR])
        .dns([Ipv4Addr::new(10, 77, 0, 53)])
        .domain_name("vm.test")
        .domain_search(["vm.test", "test"])
        .ntp([Ipv4Addr::new(10, 77, 0, 123)])
        .classless_routes([Route::new(
            "172.16.0.0/12".parse().unwrap(),
            Ipv4Addr::new(10, 77, 0, 254),
        )])
        .lease_time(LeaseTime::from_secs(3600))
        .mtu(1400)
        .build()
        .unwrap()
}

struct Served {
    events: mpsc::Receiver<Event>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<StaticLeases, dhcp_server::Error>>,
}

impl Served {
    fn start(topology: &Topology) -> Self {
        Self::start_with(topology, SocketConfig::new())
    }

    fn start_with(topology: &Topology, socket: SocketConfig) -> Self {
        let socket = topology.bind_server(&socket.interface(SERVER_IF)).unwrap();
        let leases: StaticLeases = [(CLIENT_MAC.parse::<MacAddr>().unwrap(), Lease::new(LEASED))]
            .into_iter()
            .collect();
        let (tx, events) = mpsc::channel(256);
        let shutdown = CancellationToken::new();
        let server = Server::new(ConfigHandle::new(config()), leases).with_events(tx);
        let task = tokio::spawn(server.run(socket, shutdown.clone()));
        Self {
            events,
            shutdown,
            task,
        }
    }

    async fn stop(mut self) -> Vec<Event> {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        let mut all = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            all.push(e);
        }
        all
    }
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(Event::kind).collect()
}

/// The `key=value` pairs of the last line of `out` that starts with `marker`.
fn fields(out: &str, marker: &str) -> std::collections::HashMap<String, String> {
    out.lines()
        .rfind(|l| l.starts_with(marker))
        .unwrap_or_else(|| panic!("no {marker:?} line in client output:\n{out}"))
        .split('|')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
echo "$1|ip=$ip|subnet=$subnet|router=$router|dns=$dns|domain=$domain|search=$search|ntpsrv=$ntpsrv|lease=$lease|serverid=$serverid|mtu=$mtu|staticroutes=$staticroutes|broadcast=$broadcast"
"#;

/// Runs udhcpc with `extra` arguments; `classless` asks for option 121 too (and then, per
/// RFC 3442, gets no option 3: the default route comes in 121).
async fn udhcpc(extra: &[&str], classless: bool) {
    if let Some(reason) = unsupported(&["udhcpc", "ethtool"]) {
        return skip(&reason);
    }
    let t = Topology::create();
    let served = Served::start(&t);
    let script = t.file("udhcpc.sh", UDHCPC_SCRIPT, true);
    let mut cmd = t.in_client("udhcpc");
    cmd.args([
        "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", CLIENT_IF, "-s",
    ])
    .arg(&script)
    .args(["-O", "119", "-O", "42", "-O", "26"])
    .args(if classless { &["-O", "121"][..] } else { &[] })
    .args(extra);
    let (out, err) = tokio::task::spawn_blocking(move || {
        Running::spawn(&mut cmd).until(|o| o.contains("bound|"))
    })
    .await
    .unwrap();
    let events = served.stop().await;
    assert!(
        out.contains("bound|"),
        "udhcpc got no lease.\nstdout:\n{out}\nstderr:\n{err}"
    );
    let f = fields(&out, "bound|");
    assert_eq!(f["ip"], LEASED.to_string());
    assert_eq!(f["subnet"], "255.255.255.0");
    assert_eq!(f["router"], if classless { "" } else { "10.77.0.1" });
    assert_eq!(f["dns"], "10.77.0.53");
    assert_eq!(f["domain"], "vm.test");
    assert_eq!(f["search"], "vm.test test");
    assert_eq!(f["ntpsrv"], "10.77.0.123");
    assert_eq!(f["lease"], "3600");
    assert_eq!(f["serverid"], "10.77.0.1");
    assert_eq!(f["mtu"], "1400");
    assert_eq!(f["broadcast"], "10.77.0.255");
    assert_eq!(
        f["staticroutes"],
        "172.16.0.0/12 10.77.0.254 0.0.0.0/0 10.77.0.1"
    );
    let k = kinds(&events);
    assert!(k.contains(&EventKind::Offered), "{events:?}");
    assert!(
        k.iter().any(|k| matches!(k, EventKind::Acked(_))),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.client().mac() == Some(CLIENT_MAC.parse().unwrap()))
    );
}

#[tokio::test]
async fn udhcpc_gets_the_lease_and_options() {
    udhcpc(&[], false).await;
}

#[tokio::test]
async fn udhcpc_asking_for_classless_routes_gets_them_instead_of_the_router() {
    udhcpc(&[], true).await;
}

#[tokio::test]
async fn udhcpc_with_a_duid_client_id_gets_the_mac_pinned_lease() {
    // RFC 4361 client-id (type 255, IAID, DUID-LLT), as systemd-networkd and dhcpcd send.
    udhcpc(
        &["-x", "0x3d:ff000000010001000100002a1a020000770001"],
        false,
    )
    .await;
}

#[tokio::test]
async fn udhcpc_with_the_broadcast_flag_gets_the_lease() {
    udhcpc(&["-B"], false).await;
}

const DHCLIENT_SCRIPT: &str = r#"#!/bin/sh
echo "$reason|ip=$new_ip_address|subnet=$new_subnet_mask|router=$new_routers|dns=$new_domain_name_servers|domain=$new_domain_name|search=$new_domain_search|ntp=$new_ntp_servers|lease=$new_dhcp_lease_time|serverid=$new_dhcp_server_identifier|mtu=$new_interface_mtu"
"#;

const DHCLIENT_CONF: &str = "timeout 20;\nretry 1;\ninitial-interval 1;\n\
request subnet-mask, broadcast-address, routers, domain-name-servers, domain-name, \
domain-search, ntp-servers, interface-mtu, dhcp-lease-time;\n";

async fn dhclient(offload: bool, checksum: bool) {
    if let Some(reason) = unsupported(&["dhclient", "ethtool"]) {
        return skip(&reason);
    }
    let t = Topology::create();
    t.set_tx_offload(offload);
    let served = Served::start_with(&t, SocketConfig::new().udp_checksum(checksum));
    let script = t.file("dhclient.sh", DHCLIENT_SCRIPT, true);
    let conf = t.file("dhclient.conf", DHCLIENT_CONF, false);
    let mut cmd = t.in_client("dhclient");
    cmd.args(["-4", "-v", "-1", "-d", "-sf"])
        .arg(&script)
        .arg("-cf")
        .arg(&conf)
        .arg("-lf")
        .arg(t.dir.join("dhclient.leases"))
        .arg("-pf")
        .arg(t.dir.join("dhclient.pid"))
        .arg(CLIENT_IF);
    let (out, err) = tokio::task::spawn_blocking(move || {
        Running::spawn(&mut cmd).until(|o| o.contains("BOUND|"))
    })
    .await
    .unwrap();
    let events = served.stop().await;
    assert!(
        out.contains("BOUND|"),
        "dhclient (tx offload {}) got no lease.\nstdout:\n{out}\nstderr:\n{err}\nevents: {events:?}",
        if offload { "on" } else { "off" }
    );
    assert!(!err.contains("bad udp checksums"), "{err}");
    let f = fields(&out, "BOUND|");
    assert_eq!(f["ip"], LEASED.to_string());
    assert_eq!(f["subnet"], "255.255.255.0");
    assert_eq!(f["router"], "10.77.0.1");
    assert_eq!(f["dns"], "10.77.0.53");
    assert_eq!(f["domain"], "vm.test");
    assert_eq!(f["search"], "vm.test. test.");
    assert_eq!(f["ntp"], "10.77.0.123");
    assert_eq!(f["lease"], "3600");
    assert_eq!(f["serverid"], "10.77.0.1");
    assert_eq!(f["mtu"], "1400");
}

#[tokio::test]
async fn dhclient_gets_the_lease_with_tx_checksum_offload_off() {
    dhclient(false, true).await;
}

#[tokio::test]
async fn dhclient_gets_the_lease_with_tx_checksum_offload_on() {
    // Our replies leave with a partial checksum (see the tcpdump test below); Debian 12's
    // dhclient checks TP_STATUS_CSUMNOTREADY and accepts them.
    dhclient(true, true).await;
}

#[tokio::test]
async fn dhclient_gets_the_lease_with_offload_on_and_udp_checksums_off() {
    dhclient(true, false).await;
}

/// What a packet-socket client sees of our replies on the wire (tcpdump in the client
/// namespace), with TX offload on: a partial checksum by default (`TP_STATUS_CSUMNOTREADY`), no
/// checksum at all with `udp_checksum(false)`.
async fn wire_checksum(checksum: bool) -> String {
    let t = Topology::create();
    t.set_tx_offload(true);
    let served = Served::start_with(&t, SocketConfig::new().udp_checksum(checksum));
    let mut dump = t.in_client("tcpdump");
    dump.args([
        "-i", CLIENT_IF, "-vv", "-n", "-l", "-c", "2", "udp", "and", "src", "port", "67",
    ]);
    let dump = Running::spawn(&mut dump);
    let script = t.file("udhcpc.sh", UDHCPC_SCRIPT, true);
    let mut cmd = t.in_client("udhcpc");
    cmd.args([
        "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", CLIENT_IF, "-s",
    ])
    .arg(&script);
    tokio::task::spawn_blocking(move || {
        // tcpdump needs a moment to attach; udhcpc retries every second anyway.
        std::thread::sleep(Duration::from_millis(300));
        Running::spawn(&mut cmd).until(|o| o.contains("bound|"))
    })
    .await
    .unwrap();
    let (out, _) = tokio::task::spawn_blocking(move || dump.until(|o| o.lines().count() >= 4))
        .await
        .unwrap();
    served.stop().await;
    out
}

#[tokio::test]
async fn tx_offload_leaves_partial_checksums_unless_udp_checksums_are_off() {
    if let Some(reason) = unsupported(&["udhcpc", "ethtool", "tcpdump"]) {
        return skip(&reason);
    }
    let default = wire_checksum(true).await;
    assert!(
        default.contains("bad udp cksum"),
        "expected a partial checksum:\n{default}"
    );
    let zero = wire_checksum(false).await;
    assert!(zero.contains("no cksum"), "expected checksum 0:\n{zero}");
}

const DHCPCD_SCRIPT: &str = r#"#!/bin/sh
echo "$reason|ip=$new_ip_address|subnet=$new_subnet_mask|router=$new_routers|dns=$new_domain_name_servers|domain=$new_domain_name|search=$new_domain_search|ntp=$new_ntp_servers|lease=$new_dhcp_lease_time|serverid=$new_dhcp_server_identifier|mtu=$new_interface_mtu|routes=$new_classless_static_routes"
"#;

/// Debian's defaults that matter here (DUID client-id, classless routes, server id
/// required), without the rest of the stock file.
const DHCPCD_CONF: &str = "duid\noption domain_name_servers, domain_name, domain_search\n\
option classless_static_routes\noption ntp_servers\noption interface_mtu\n\
require dhcp_server_identifier\nnoipv6rs\nnoipv4ll\nnoarp\n";

/// Runs dhcpcd in the client namespace with `args`, in a private mount namespace whose
/// /run and /var/lib/dhcpcd are empty tmpfs: dhcpcd keeps its pid file, control socket, DUID
/// and leases there, which would otherwise land on the host and leak between tests.
fn dhcpcd(t: &Topology, args: &str) -> Command {
    let shell = format!(
        "mount -t tmpfs none /run && mount -t tmpfs none /var/lib/dhcpcd && exec dhcpcd {args}"
    );
    let mut cmd = t.in_client("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &shell]);
    cmd
}

async fn dhcpcd_run(test_mode: bool) {
    if let Some(reason) = unsupported(&["dhcpcd", "unshare"]) {
        return skip(&reason);
    }
    let t = Topology::create();
    let served = Served::start(&t);
    let script = t.file("dhcpcd.sh", DHCPCD_SCRIPT, true);
    let conf = t.file("dhcpcd.conf", DHCPCD_CONF, false);
    // -T: stop at the offer and report it with reason TEST; else a one-shot (-1) full
    // exchange that configures veth-c (in the client namespace) and reports BOUND.
    let (mode, marker) = if test_mode {
        ("-T", "TEST|")
    } else {
        ("-1", "BOUND|")
    };
    let mut cmd = dhcpcd(
        &t,
        &format!(
            "-4 -B {mode} -t 20 -f {} -c {} {CLIENT_IF}",
            conf.display(),
            script.display()
        ),
    );
    let (out, err) =
        tokio::task::spawn_blocking(move || Running::spawn(&mut cmd).until(|o| o.contains(marker)))
            .await
            .unwrap();
    let events = served.stop().await;
    assert!(
        out.contains(marker),
        "dhcpcd got no lease.\nstdout:\n{out}\nstderr:\n{err}\nevents: {events:?}"
    );
    // Debian's dhcpcd sends an RFC 4361 DUID client-id; the MAC-pinned lease is found anyway.
    assert!(err.contains("DUID"), "{err}");
    let f = fields(&out, marker);
    assert_eq!(f["ip"], LEASED.to_string());
    assert_eq!(f["subnet"], "255.255.255.0");
    assert_eq!(f["router"], "", "asked for 121: no option 3");
    assert_eq!(f["routes"], "172.16.0.0/12 10.77.0.254 0.0.0.0/0 10.77.0.1");
    assert_eq!(f["dns"], "10.77.0.53");
    assert_eq!(f["domain"], "vm.test");
    assert_eq!(f["search"], "vm.test test");
    assert_eq!(f["ntp"], "10.77.0.123");
    assert_eq!(f["lease"], "3600");
    assert_eq!(f["serverid"], "10.77.0.1");
    assert_eq!(f["mtu"], "1400");
    let k = kinds(&events);
    assert!(k.contains(&EventKind::Offered), "{events:?}");
    if !test_mode {
        assert!(
            k.contains(&EventKind::Acked(dhcp_server::RequestState::Selecting)),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn dhcpcd_test_mode_gets_the_offer_and_options() {
    dhcpcd_run(true).await;
}

#[tokio::test]
async fn dhcpcd_one_shot_gets_the_lease_and_options() {
    dhcpcd_run(false).await;
}

#[tokio::test]
async fn a_second_server_on_the_same_interface_fails_loudly() {
    if let Some(reason) = unsupported(&[]) {
        return skip(&reason);
    }
    let t = Topology::create();
    let on_veth = SocketConfig::new().interface(SERVER_IF);
    let _first = t.bind_server(&on_veth).unwrap();
    let err = t.bind_server(&on_veth).unwrap_err();
    assert!(
        matches!(err, dhcp_server::Error::AddressInUse { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "UDP 0.0.0.0:67 on interface veth-s is already in use: is another DHCP server running there?"
    );
    // A server on another interface of the same namespace is fine (device-bound sockets do
    // not conflict), and one bound to no interface conflicts with them.
    ip(&[
        "link", "add", "veth-x", "netns", &t.server, "type", "veth", "peer", "name", "veth-y",
        "netns", &t.client,
    ]);
    let _other = t
        .bind_server(&SocketConfig::new().interface("veth-x"))
        .unwrap();
    let err = t.bind_server(&SocketConfig::new()).unwrap_err();
    assert!(
        matches!(err, dhcp_server::Error::AddressInUse { .. }),
        "{err:?}"
    );
    let err = t
        .bind_server(&SocketConfig::new().interface("nope0"))
        .unwrap_err();
    assert!(
        matches!(err, dhcp_server::Error::NoSuchInterface { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn dhclient_rebooting_with_a_stale_lease_is_nacked_then_gets_its_address() {
    if let Some(reason) = unsupported(&["dhclient"]) {
        return skip(&reason);
    }
    let t = Topology::create();
    let served = Served::start(&t);
    let script = t.file("dhclient.sh", DHCLIENT_SCRIPT, true);
    let conf = t.file("dhclient.conf", DHCLIENT_CONF, false);
    // A valid lease for another address of the subnet: dhclient starts in INIT-REBOOT.
    let leases = t.file(
        "dhclient.leases",
        &format!(
            "lease {{\n  interface \"{CLIENT_IF}\";\n  fixed-address 10.77.0.99;\n  \
             option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier 10.77.0.1;\n  \
             renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n  \
             expire 4 2037/01/01 00:00:00;\n}}\n"
        ),
        false,
    );
    let mut cmd = t.in_client("dhclient");
    cmd.args(["-4", "-v", "-1", "-d", "-sf"])
        .arg(&script)
        .arg("-cf")
        .arg(&conf)
        .arg("-lf")
        .arg(&leases)
        .arg("-pf")
        .arg(t.dir.join("dhclient.pid"))
        .arg(CLIENT_IF);
    let (out, err) = tokio::task::spawn_blocking(move || {
        Running::spawn(&mut cmd).until(|o| o.contains("BOUND|"))
    })
    .await
    .unwrap();
    let events = served.stop().await;
    assert!(
        out.contains("BOUND|"),
        "stdout:\n{out}\nstderr:\n{err}\nevents: {events:?}"
    );
    assert!(err.contains("DHCPNAK"), "{err}");
    assert_eq!(fields(&out, "BOUND|")["ip"], LEASED.to_string());
    assert_eq!(
        kinds(&events)[0],
        EventKind::Nacked(dhcp_server::RequestState::InitReboot)
    );
}

#[tokio::test]
async fn udhcpc_release_on_exit_is_reported() {
    if let Some(reason) = unsupported(&["udhcpc"]) {
        return skip(&reason);
    }
    let t = Topology::create();
    let served = Served::start(&t);
    // udhcpc sends its RELEASE from the leased address: the script must configure it (on
    // veth-c, inside the client namespace).
    let script = t.file(
        "udhcpc.sh",
        &format!("{UDHCPC_SCRIPT}[ \"$1\" = bound ] && ip addr add \"$ip/$mask\" dev \"$interface\"\nexit 0\n"),
        true,
    );
    let mut cmd = t.in_client("udhcpc");
    // -R: release on exit. Not with -q: busybox 1.35 quits before it counts as bound and then
    // sends no RELEASE. SIGTERM once bound instead.
    cmd.args([
        "-f", "-R", "-n", "-t", "5", "-T", "1", "-i", CLIENT_IF, "-s",
    ])
    .arg(&script);
    let (out, err) = tokio::task::spawn_blocking(move || {
        Running::spawn(&mut cmd).until_then(
            |o| o.contains("bound|"),
            Some(nix::sys::signal::Signal::SIGTERM),
        )
    })
    .await
    .unwrap();
    assert!(out.contains("bound|"), "stdout:\n{out}\nstderr:\n{err}");
    // The RELEASE is unicast to the server; give it a moment to be handled.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = served.stop().await;
    let released = events.iter().find(|e| e.kind() == EventKind::Released);
    assert_eq!(
        released.map(Event::addr),
        Some(LEASED),
        "{events:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
}
