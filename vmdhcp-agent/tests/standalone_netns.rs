//! Standalone mode end to end: the real `vmdhcp-agent` binary serves an IPPool file in one
//! network namespace, real DHCP clients (busybox udhcpc, ISC dhclient) ask from another across
//! a veth pair. Needs root and the clients; without them each test prints why it skips.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use vmdhcp_examples::client::{Got, parse_script_line, udhcpc_once};
use vmdhcp_examples::netns::{self, CLIENT_IF, SERVER_IF, Topology};

const MAC: &str = "02:00:00:98:00:01";
const AGENT_LINE_WAIT: Duration = Duration::from_secs(15);

use vmdhcp_examples::prereq::unavailable as skip;

/// Why this machine cannot run the test, if it cannot.
fn unsupported(client: &str) -> Option<String> {
    netns::unsupported().or_else(|| {
        netns::find(client)
            .is_none()
            .then(|| format!("{client} is not installed"))
    })
}

/// The pool file: `10.98.0.0/24`, server `10.98.0.1`, `dns`, and `mac` at `10.98.0.50`
/// in `status.ipv4.allocated` when given.
fn pool_yaml(dns: &str, mac: Option<&str>) -> String {
    let allocated = mac.map_or_else(
        || "{}".to_owned(),
        |mac| format!("\n        10.98.0.50: {mac}"),
    );
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
    router: 10.98.0.1
    dns: [{dns}]
    domainName: test.internal
    leaseTime: 3600
status:
  ipv4:
    used: 1
    available: 49
    allocated: {allocated}
"
    )
}

/// Lines a child prints, read on a thread so the test can wait for one with a deadline.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn follow(out: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// The first new line that `want` accepts, within `wait`.
    fn until<T>(&mut self, within: Duration, want: impl Fn(&str) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + within;
        while let Ok(line) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            if let Some(found) = want(&line) {
                return Some(found);
            }
        }
        None
    }

    fn contains(&mut self, wait: Duration, text: &str) -> bool {
        self.until(wait, |l| l.contains(text).then_some(()))
            .is_some()
    }

    fn dump(&self) -> String {
        self.seen.join("\n")
    }
}

/// The agent binary running in the server namespace on `file`, and its log lines.
struct RunningAgent {
    child: Child,
    log: Lines,
}

impl RunningAgent {
    fn start(t: &Topology, file: &Path) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &t.server])
            .arg(env!("CARGO_BIN_EXE_vmdhcp-agent"))
            .arg("--ippool-file")
            .arg(file)
            .args(["--nic", SERVER_IF, "--http-bind", "127.0.0.1:8080"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vmdhcp-agent");
        // tracing writes to stdout; keep stderr too, for panics.
        let log = Lines::follow(child.stdout.take().expect("piped"));
        let mut agent = Self { child, log };
        assert!(
            agent.log.contains(AGENT_LINE_WAIT, "serving DHCP"),
            "the agent did not start serving:\n{}",
            agent.log.dump()
        );
        agent
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A long-running udhcpc in the client namespace whose script configures the address, so
/// renewals go unicast to the server as they do on a real VM.
struct Udhcpc {
    child: Child,
    out: Lines,
}

impl Udhcpc {
    fn start(t: &Topology) -> Self {
        let script = t.scratch.join("udhcpc-configure.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\ncase \"$1\" in\n  bound|renew)\n    ip addr replace \"$ip/$subnet\" dev \"$interface\"\n    echo \"$1|$ip|$subnet|$router|$dns|$domain|$lease|$serverid\";;\n  deconfig) ip addr flush dev \"$interface\";;\nesac\nexit 0\n",
        )
        .expect("write script");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod script");
        }
        let udhcpc = netns::find("udhcpc").expect("checked");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &t.client])
            .arg(udhcpc)
            .args(["-f", "-t", "5", "-T", "1", "-A", "1", "-i", CLIENT_IF, "-s"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start udhcpc");
        let out = Lines::follow(child.stdout.take().expect("piped"));
        Self { child, out }
    }

    /// The next `bound` or `renew` report.
    fn next(&mut self, event: &str, wait: Duration) -> Option<Got> {
        self.out.until(wait, |l| {
            parse_script_line(l).and_then(|(e, got)| (e == event).then_some(got))
        })
    }

    /// Asks for a renewal now (udhcpc's SIGUSR1).
    fn renew(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid")),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .expect("signal udhcpc");
    }
}

impl Drop for Udhcpc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(path: &Path, text: &str) {
    // Replace, as editors do: the agent must follow a new inode as well as an edit in place.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write pool file");
    std::fs::rename(&tmp, path).expect("replace pool file");
}

fn topology() -> (Topology, PathBuf) {
    let t = Topology::create("vmdhcp-agent-test")
        .expect("create namespaces")
        .quiet();
    let file = t.scratch.join("ippool.yaml");
    (t, file)
}

#[test]
fn udhcpc_follows_edits_survives_a_bad_file_and_loses_a_removed_mac() {
    if let Some(reason) = unsupported("udhcpc") {
        return skip(&reason);
    }
    let (t, file) = topology();
    write(&file, &pool_yaml("10.98.0.53", Some(MAC)));
    let mut agent = RunningAgent::start(&t, &file);
    let mut client = Udhcpc::start(&t);

    let bound = client
        .next("bound", Duration::from_secs(15))
        .unwrap_or_else(|| {
            panic!(
                "no lease:\n{}\nagent:\n{}",
                client.out.dump(),
                agent.log.dump()
            )
        });
    assert_eq!(bound.address, "10.98.0.50");
    assert_eq!(bound.dns, "10.98.0.53");
    assert_eq!(bound.domain, "test.internal");
    assert_eq!(bound.router, "10.98.0.1");
    assert_eq!(bound.lease_secs, "3600");

    // An edit reaches the next reply: no restart.
    write(&file, &pool_yaml("10.98.0.54", Some(MAC)));
    assert!(
        agent.log.contains(AGENT_LINE_WAIT, "reloaded"),
        "{}",
        agent.log.dump()
    );
    client.renew();
    let renewed = client
        .next("renew", Duration::from_secs(15))
        .unwrap_or_else(|| {
            panic!(
                "no renewal:\n{}\nagent:\n{}",
                client.out.dump(),
                agent.log.dump()
            )
        });
    assert_eq!(renewed.address, "10.98.0.50");
    assert_eq!(renewed.dns, "10.98.0.54");

    // A broken file is reported; the last good table keeps answering.
    write(
        &file,
        "apiVersion: network.harvesterhci.io/v1alpha1\nkind: IPPool\nspec: [not, a, spec\n",
    );
    assert!(
        agent
            .log
            .contains(AGENT_LINE_WAIT, "still serving the last good version"),
        "{}",
        agent.log.dump()
    );
    client.renew();
    let kept = client
        .next("renew", Duration::from_secs(15))
        .unwrap_or_else(|| {
            panic!(
                "no renewal after a bad edit:\n{}\nagent:\n{}",
                client.out.dump(),
                agent.log.dump()
            )
        });
    assert_eq!(kept.dns, "10.98.0.54");

    // The MAC leaves the pool: nobody answers it any more, fresh or renewing.
    write(&file, &pool_yaml("10.98.0.54", None));
    assert!(
        agent.log.contains(AGENT_LINE_WAIT, "reloaded"),
        "{}",
        agent.log.dump()
    );
    drop(client);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let udhcpc = netns::find("udhcpc").expect("checked");
    let refused = runtime.block_on(udhcpc_once(&t, &udhcpc));
    assert!(refused.is_err(), "a removed MAC still got {refused:?}");
}

#[test]
fn dhclient_gets_the_lease_from_the_file() {
    if let Some(reason) = unsupported("dhclient") {
        return skip(&reason);
    }
    let (t, file) = topology();
    write(&file, &pool_yaml("10.98.0.53", Some(MAC)));
    let agent = RunningAgent::start(&t, &file);

    // dhclient runs its script with the lease in `new_*` variables; this one prints them.
    let script = t.scratch.join("dhclient.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$reason\" in BOUND|RENEW|REBOOT) echo \"bound|$new_ip_address|$new_subnet_mask|$new_routers|$new_domain_name_servers|$new_domain_name|$new_dhcp_lease_time|$new_dhcp_server_identifier\";; esac\nexit 0\n",
    )
    .expect("write script");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let dhclient = netns::find("dhclient").expect("checked");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &t.client])
        .arg(dhclient)
        .args(["-4", "-d", "-1", "-sf"])
        .arg(&script)
        .arg("-lf")
        .arg(t.scratch.join("dhclient.leases"))
        .arg("-pf")
        .arg(t.scratch.join("dhclient.pid"))
        .arg(CLIENT_IF)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dhclient");
    let mut out = Lines::follow(child.stdout.take().expect("piped"));
    let got = out.until(Duration::from_secs(20), |l| {
        parse_script_line(l).map(|(_, g)| g)
    });
    let _ = child.kill();
    let _ = child.wait();
    let got = got.unwrap_or_else(|| {
        panic!(
            "dhclient got no lease:\n{}\nagent:\n{}",
            out.dump(),
            agent.log.dump()
        )
    });
    assert_eq!(got.address, "10.98.0.50");
    assert_eq!(got.mask, "255.255.255.0");
    assert_eq!(got.router, "10.98.0.1");
    assert_eq!(got.dns, "10.98.0.53");
    assert_eq!(got.domain, "test.internal");
    assert_eq!(got.lease_secs, "3600");
    assert_eq!(got.server, "10.98.0.1");
}
