//! Kubernetes mode against a real API server (the project's kube-test-server, or any cluster in
//! `VMDHCP_E2E_KUBECONFIG`; see `docs/e2e.md`). Root: the agent's DHCP socket lives in a network
//! namespace, a real busybox udhcpc asks from another across a veth pair. The agent runs in this
//! process, its Kubernetes client and HTTP endpoints in the host's network.
//!
//! No controller runs: the test writes `status.ipv4.allocated` the way `vmdhcp-controller` does,
//! a PUT of the whole status through the status subresource with the resourceVersion it read. A
//! JSON merge patch would not do for a move: RFC 7386 merges maps, so the old address would stay
//! allocated to the MAC beside the new one.
//!
//! - [`status_allocations_option_edits_and_deletion_reach_udhcpc`] (shared server): the initial
//!   list gives udhcpc the allocated address; a moved address and a DNS edit reach the next
//!   lease; a deleted pool gets no answer.
//! - [`renewals_survive_an_api_server_outage_and_edits_follow_the_restart`] (a private server it
//!   stops and restarts): every renewal of a 10 s lease is answered while the API server is down
//!   for 60 s, `/readyz` stays 200, and after the restart the watch relists (after `410 Gone`)
//!   and a DNS edit reaches udhcpc within 10 s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vmdhcp_agent::{Agent, Dhcp, Source};
use vmdhcp_api::ippool::{IPPool, IPPoolStatus, IPv4Status};
use vmdhcp_examples::client::{Got, parse_script_line, udhcpc_once};
use vmdhcp_examples::e2e;
use vmdhcp_examples::netns::{self, CLIENT_IF, SERVER_IF, Topology};

const POOL: &str = "net-e2e";
/// The client end's MAC (`netns::CLIENT_MAC`).
const MAC: &str = "02:00:00:98:00:01";
const SERVER_IP: &str = "10.98.0.1";

/// root, `ip` and udhcpc, or `None` after [`e2e::unavailable`] said which is missing.
fn prerequisites() -> Option<PathBuf> {
    if !e2e::require_root("network namespaces and a veth pair for the DHCP exchange") {
        return None;
    }
    if let Some(reason) = netns::unsupported() {
        e2e::unavailable(&reason);
        return None;
    }
    let udhcpc = netns::find("udhcpc");
    if udhcpc.is_none() {
        e2e::unavailable("udhcpc (busybox) is not installed (scripts/install-test-deps.sh)");
    }
    udhcpc
}

/// The agent's log lines in the test output (`RUST_LOG` overrides the default).
fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("vmdhcp_agent=info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

/// The process's Prometheus recorder (one per process, shared by the tests: they compare
/// counters before and after, never absolute values).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("install the Prometheus recorder")
        })
        .clone()
}

fn pool(ns: &str, lease_secs: u32) -> IPPool {
    serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": POOL, "namespace": ns},
        "spec": {"networkName": format!("{ns}/{POOL}"), "ipv4Config": {
            "serverIP": SERVER_IP, "cidr": "10.98.0.0/24", "router": SERVER_IP,
            "dns": ["10.98.0.53"], "domainName": "e2e.test", "leaseTime": lease_secs,
            "pool": {"start": "10.98.0.50", "end": "10.98.0.99"}}}
    }))
    .expect("an IPPool")
}

/// What the controller writes when `ip` is the MAC's address: the whole status, replaced
/// through the status subresource with the resourceVersion just read (a conflict reads again).
async fn allocate(api: &Api<IPPool>, ip: &str) {
    for _ in 0..5 {
        let mut current = api
            .get(POOL)
            .await
            .unwrap_or_else(|e| panic!("read IPPool {POOL}: {e}"));
        current.status = Some(IPPoolStatus {
            ipv4: Some(IPv4Status {
                allocated: BTreeMap::from([
                    (SERVER_IP.to_owned(), "EXCLUDED".to_owned()),
                    (ip.to_owned(), MAC.to_owned()),
                ]),
                used: 1,
                available: 49,
            }),
            ..current.status.unwrap_or_default()
        });
        match api
            .replace_status(POOL, &PostParams::default(), &current)
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("replace the status of IPPool {POOL}: {e}"),
        }
    }
    panic!("replace the status of IPPool {POOL}: a conflict on every one of 5 tries");
}

/// A user's edit of the DNS servers: a merge patch of the spec (a list is replaced whole).
async fn set_dns(api: &Api<IPPool>, dns: &str) -> Result<(), kube::Error> {
    let patch = json!({"spec": {"ipv4Config": {"dns": [dns]}}});
    api.patch(POOL, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// The agent for `ns/POOL`, its DHCP socket in the server namespace, HTTP on a free loopback
/// port, the process's recorder behind `/metrics`.
async fn start_agent(
    client: kube::Client,
    ns: &str,
    t: &Topology,
) -> (
    std::sync::Arc<vmdhcp_agent::state::Served>,
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), vmdhcp_agent::Error>>,
) {
    let socket = t
        .bind_server(&dhcp_server::SocketConfig::new().interface(SERVER_IF))
        .expect("DHCP socket in the server namespace");
    let mut agent = Agent::new(
        Source::Kube {
            client,
            namespace: ns.to_owned(),
            name: POOL.into(),
        },
        Dhcp::Socket(socket),
    );
    agent.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    agent.metrics = Some(prometheus());
    let http = agent
        .listen_http()
        .await
        .expect("bind the agent's HTTP port")
        .expect("an HTTP address was set");
    let served = agent.served.clone();
    let stop = CancellationToken::new();
    let running = tokio::spawn(agent.run(stop.clone()));
    (served, http, stop, running)
}

/// `GET path` on the agent's HTTP port: status code and body.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .map_err(|_| format!("GET {path}: no answer within 5 s"))?
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// The value of one series (`name{labels}` exactly as the exporter writes it) in `/metrics`;
/// 0 when absent (a counter not incremented yet).
fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(addr: SocketAddr) -> String {
    match http_get(addr, "/metrics").await {
        Ok((200, body)) => body,
        other => panic!("GET /metrics: {other:?}"),
    }
}

/// A line udhcpc (stderr) or its script (stdout) printed, and when it arrived.
#[derive(Debug, Clone)]
struct Line {
    at: Instant,
    text: String,
}

/// A long-running udhcpc in the client namespace. Its script configures the address, so renewals
/// go unicast to the server as on a VM, and prints `<event>|<lease fields>` for every event.
///
/// It renews every [`RENEW_EVERY`]: busybox raises a lease shorter than 30 s to 30 s and would
/// renew only every 15 s by itself, so the test asks for each renewal with SIGUSR1, which sends
/// the same unicast REQUEST as a renewal at T1.
struct Udhcpc {
    _child: tokio::process::Child,
    renewing: tokio::task::JoinHandle<()>,
    rx: mpsc::UnboundedReceiver<Line>,
    seen: Vec<Line>,
    /// `seen[..looked]` have been looked at by [`Udhcpc::next`].
    looked: usize,
}

/// How often the client renews: more often than T1 of the short lease, so that the client adds
/// at most 2 s to the delay between an edit and the lease that shows it (the rest is the
/// agent's).
const RENEW_EVERY: Duration = Duration::from_secs(2);

const CONFIGURING_SCRIPT: &str = "#!/bin/sh
case \"$1\" in
  bound|renew)
    ip addr replace \"$ip/$subnet\" dev \"$interface\"
    echo \"$1|$ip|$subnet|$router|$dns|$domain|$lease|$serverid\";;
  deconfig) ip addr flush dev \"$interface\"; echo \"deconfig|\";;
  *) echo \"$1|\";;
esac
exit 0
";

impl Udhcpc {
    fn start(t: &Topology, udhcpc: &std::path::Path) -> Self {
        let script = t.scratch.join("udhcpc-configure.sh");
        std::fs::write(&script, CONFIGURING_SCRIPT).expect("write the udhcpc script");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod the udhcpc script");
        }
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &t.client])
            .arg(udhcpc)
            .args(["-f", "-t", "5", "-T", "1", "-A", "1", "-i", CLIENT_IF, "-s"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start udhcpc");
        let (tx, rx) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for out in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(text)) = lines.next_line().await {
                    if tx
                        .send(Line {
                            at: Instant::now(),
                            text,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(nix::unistd::Pid::from_raw)
            .expect("udhcpc's pid");
        let renewing = tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).is_err() {
                    return;
                }
            }
        });
        Self {
            _child: child,
            renewing,
            rx,
            seen: Vec::new(),
            looked: 0,
        }
    }

    /// The next `event` report whose lease `want` accepts, within `within`, and when it came.
    async fn next(
        &mut self,
        event: &str,
        within: Duration,
        want: impl Fn(&Got) -> bool,
    ) -> Option<(Instant, Got)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(line) = self.seen.get(self.looked) {
                self.looked += 1;
                if let Some((e, got)) = parse_script_line(&line.text)
                    && e == event
                    && want(&got)
                {
                    return Some((line.at, got));
                }
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Takes in what arrived so far (for [`Udhcpc::next`] too).
    fn drain(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
    }

    fn dump(&self, since: Instant) -> String {
        self.dump_between(since, Instant::now())
    }

    fn dump_between(&self, since: Instant, until: Instant) -> String {
        self.seen
            .iter()
            .filter(|l| l.at >= since && l.at <= until)
            .map(|l| {
                format!(
                    "{:>7.2} s  {}",
                    l.at.saturating_duration_since(since).as_secs_f64(),
                    l.text
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Udhcpc {
    fn drop(&mut self) {
        self.renewing.abort();
    }
}

/// What udhcpc reported of its renewals between `from` and `to`.
#[derive(Debug, Default)]
struct Renewals {
    /// Renewals started (`sending renew`, the unicast REQUEST).
    sent: usize,
    /// Of those, the ones that ended with a renewed lease (the script's `renew`) before the next
    /// one started, whether the ACK of the unicast REQUEST or of udhcpc's broadcast retry.
    answered: usize,
    /// udhcpc's broadcast retries (`broadcasting renew`, 1 s after a unicast REQUEST it saw no
    /// answer to).
    broadcast_retries: usize,
    /// Lines that show a lapse: a NAK, a lost lease, a new discover.
    lapses: Vec<String>,
}

/// Pairs each renewal started in the window with what followed it (lines after `to` count, so
/// a renewal started just before the end is judged by its answer).
fn renewals(lines: &[Line], from: Instant, to: Instant) -> Renewals {
    let mut r = Renewals::default();
    for (i, line) in lines.iter().enumerate() {
        if line.at < from || line.at > to {
            continue;
        }
        let text = line.text.as_str();
        if text.contains("sending renew") {
            r.sent += 1;
            let outcome = lines[i + 1..]
                .iter()
                .find(|l| l.text.contains("sending renew") || l.text.starts_with("renew|"));
            if outcome.is_some_and(|l| l.text.starts_with("renew|")) {
                r.answered += 1;
            }
        } else if text.contains("broadcasting renew") {
            r.broadcast_retries += 1;
        } else if ["deconfig|", "nak|", "leasefail|", "bound|"]
            .iter()
            .any(|p| text.starts_with(p))
            || ["discover", "lease lost"].iter().any(|p| text.contains(p))
        {
            r.lapses.push(text.to_owned());
        }
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_allocations_option_edits_and_deletion_reach_udhcpc() {
    let Some(udhcpc) = prerequisites() else {
        return;
    };
    let Some(cluster) = e2e::cluster().await else {
        return;
    };
    init_logging();
    e2e::apply_vmdhcp_crds(&cluster.client).await;
    let client = cluster.client.clone();
    e2e::with_temp_ns(&cluster.client, "vmdhcp-e2e-agent", |ns| async move {
        let started = Instant::now();
        let pools: Api<IPPool> = Api::namespaced(client.clone(), &ns);
        pools
            .create(&PostParams::default(), &pool(&ns, 600))
            .await
            .expect("create the IPPool");
        allocate(&pools, "10.98.0.60").await;

        let t = Topology::create("vmdhcp-e2e").expect("namespaces").quiet();
        let (served, http, stop, running) = start_agent(client.clone(), &ns, &t).await;

        // The initial list fills the table: a lease at once, and the agent is ready.
        tokio::time::timeout(Duration::from_secs(30), served.configured())
            .await
            .expect("the agent synced the IPPool within 30 s");
        e2e::eventually("/readyz 200", Duration::from_secs(10), || async {
            matches!(http_get(http, "/readyz").await, Ok((200, _))).then_some(())
        })
        .await;
        let got = udhcpc_once(&t, &udhcpc)
            .await
            .unwrap_or_else(|e| panic!("a lease from the initial list: {e}"));
        assert_eq!(
            (
                got.address.as_str(),
                got.dns.as_str(),
                got.domain.as_str(),
                got.lease_secs.as_str()
            ),
            ("10.98.0.60", "10.98.0.53", "e2e.test", "600"),
            "{got}"
        );

        // The controller moves the VM to another address and the user edits the DNS: the next
        // lease has both, and the old address is no longer the MAC's.
        allocate(&pools, "10.98.0.61").await;
        set_dns(&pools, "10.98.0.54")
            .await
            .expect("merge-patch the DNS of the IPPool");
        e2e::eventually(
            "the move and the DNS edit to reach the agent",
            Duration::from_secs(30),
            || {
                let served = served.clone();
                async move {
                    let table: Vec<String> = served
                        .table()
                        .iter()
                        .map(|(mac, ip)| format!("{mac}={ip}"))
                        .collect();
                    let dns = served.options().map(|o| o.dns).unwrap_or_default();
                    (table == [format!("{MAC}=10.98.0.61")]
                        && dns == ["10.98.0.54".parse::<std::net::Ipv4Addr>().expect("ip")])
                    .then_some(())
                }
            },
        )
        .await;
        let got = udhcpc_once(&t, &udhcpc)
            .await
            .unwrap_or_else(|e| panic!("a lease after the move: {e}"));
        assert_eq!(
            (got.address.as_str(), got.dns.as_str()),
            ("10.98.0.61", "10.98.0.54"),
            "{got}"
        );

        // Deleting the pool stops the answers.
        pools
            .delete(POOL, &DeleteParams::default())
            .await
            .expect("delete the IPPool");
        e2e::eventually(
            "the agent to drop the leases of the deleted pool",
            Duration::from_secs(30),
            || {
                let served = served.clone();
                async move { served.table().is_empty().then_some(()) }
            },
        )
        .await;
        let refused = udhcpc_once(&t, &udhcpc).await;
        assert!(
            refused.is_err(),
            "a deleted pool still answered: {refused:?}"
        );

        stop.cancel();
        running
            .await
            .expect("agent task")
            .expect("the agent ran cleanly");
        eprintln!(
            "e2e agent: list, move and edit, delete: {:.1} s",
            started.elapsed().as_secs_f64()
        );
    })
    .await;
}

/// How long the API server stays down.
const OUTAGE: Duration = Duration::from_secs(60);
/// The lease the outage scenario serves (renewed every [`RENEW_EVERY`]).
const SHORT_LEASE_SECS: u32 = 10;
/// The most an edit may take to reach udhcpc after the API server is back.
const EDIT_AFTER_RESTART: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_survive_an_api_server_outage_and_edits_follow_the_restart() {
    let Some(udhcpc) = prerequisites() else {
        return;
    };
    init_logging();
    let dir = ServerDir(std::env::temp_dir().join(e2e::unique_name("vmdhcp-e2e-agent-kts")));
    let Some(mut kts) = e2e::TestServer::start(&dir.0).await else {
        return;
    };
    let client = kts.client().await;
    e2e::apply_vmdhcp_crds(&client).await;
    let kts_ref = &mut kts;
    let ns_client = client.clone();
    e2e::with_temp_ns(&ns_client, "vmdhcp-e2e-agent-outage", |ns| async move {
        let started = Instant::now();
        let pools: Api<IPPool> = Api::namespaced(client.clone(), &ns);
        pools
            .create(&PostParams::default(), &pool(&ns, SHORT_LEASE_SECS))
            .await
            .expect("create the IPPool");
        allocate(&pools, "10.98.0.60").await;

        let t = Topology::create("vmdhcp-e2e-outage")
            .expect("namespaces")
            .quiet();
        let (served, http, stop, running) = start_agent(client.clone(), &ns, &t).await;
        tokio::time::timeout(Duration::from_secs(30), served.configured())
            .await
            .expect("the agent synced the IPPool within 30 s");

        let mut dhcp = Udhcpc::start(&t, &udhcpc);
        let (_, bound) = dhcp
            .next("bound", Duration::from_secs(20), |_| true)
            .await
            .unwrap_or_else(|| panic!("udhcpc got no lease:\n{}", dhcp.dump(started)));
        assert_eq!(
            (bound.address, bound.lease_secs),
            ("10.98.0.60".to_owned(), SHORT_LEASE_SECS.to_string())
        );
        // One renewal while the API server is up: renewals work at all.
        dhcp.next("renew", 3 * RENEW_EVERY, |_| true)
            .await
            .unwrap_or_else(|| panic!("no renewal:\n{}", dhcp.dump(started)));

        // The API server goes away for a minute.
        let outage = Outage::run(kts_ref, http).await;

        // It comes back with the same data (the restart takes seconds, so every renewal of the
        // window has its outcome by then). The watch resumes: a watch from the old
        // resourceVersion gets 410 Gone and the agent lists again. A DNS edit right away must
        // reach the next lease within seconds.
        kts_ref.restart().await;
        let restarted_at = Instant::now();
        let edited = edit_dns_once_accepted(&pools, "10.98.0.54").await;

        // During the outage: every renewal answered, the agent ready all along.
        dhcp.drain();
        outage.check(&dhcp);

        let lease = dhcp
            .next("renew", Duration::from_secs(120), |g| g.dns == "10.98.0.54")
            .await;
        let after = scrape(http).await;
        let delta = |name: &str| series(&after, name) - series(&outage.during, name);
        let expired = delta("vmdhcp_agent_watch_expired_total");
        let relists = delta("vmdhcp_agent_lists_total");
        let Some((leased_at, got)) = lease else {
            panic!(
                "no lease with the edited DNS within 120 s of the edit ({expired} 410s, \
                 {relists} relists):\n{}",
                dhcp.dump(started)
            );
        };
        let delay = leased_at.saturating_duration_since(edited);
        eprintln!(
            "e2e agent outage: edit {:.1} s after the restart; the edited DNS reached udhcpc \
             {:.1} s after the edit ({} -> {}); watch expired (410) {expired}, relists {relists}",
            edited.saturating_duration_since(restarted_at).as_secs_f64(),
            delay.as_secs_f64(),
            got.address,
            got.dns,
        );
        assert_eq!(got.address, "10.98.0.60");
        assert!(
            delay <= EDIT_AFTER_RESTART,
            "the DNS edit reached udhcpc {:.1} s after the edit (at most \
             {EDIT_AFTER_RESTART:?}):\n{}",
            delay.as_secs_f64(),
            dhcp.dump(started)
        );
        assert!(
            expired >= 1.0 && relists >= 1.0,
            "after the restart the watch should have expired (410) and relisted: {expired} \
             410s, {relists} relists"
        );

        stop.cancel();
        running
            .await
            .expect("agent task")
            .expect("the agent ran cleanly");
        eprintln!(
            "e2e agent outage scenario: {:.1} s",
            started.elapsed().as_secs_f64()
        );
    })
    .await;
    drop(ns_client);
    kts.stop().await;
}

/// The DNS edit, retried until the restarted API server takes it; when it did.
async fn edit_dns_once_accepted(pools: &Api<IPPool>, dns: &str) -> Instant {
    e2e::eventually(
        "the DNS edit to be accepted after the restart",
        Duration::from_secs(30),
        || async move {
            match set_dns(pools, dns).await {
                Ok(()) => Some(Instant::now()),
                Err(e) => {
                    eprintln!("edit after the restart: {e}; again");
                    None
                }
            }
        },
    )
    .await
}

/// [`OUTAGE`] without the API server, as the agent's endpoints saw it.
struct Outage {
    down_at: Instant,
    up_at: Instant,
    /// `/metrics` before and after.
    before: String,
    during: String,
    /// `/readyz`, every second.
    readyz: Vec<Result<u16, String>>,
}

impl Outage {
    /// Stops the API server for [`OUTAGE`], probing `/readyz` every second.
    async fn run(kts: &mut e2e::TestServer, http: SocketAddr) -> Self {
        let before = scrape(http).await;
        let down_at = Instant::now();
        kts.stop().await;
        let mut readyz = Vec::new();
        while down_at.elapsed() < OUTAGE {
            readyz.push(http_get(http, "/readyz").await.map(|(code, _)| code));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let during = scrape(http).await;
        Self {
            down_at,
            up_at: Instant::now(),
            before,
            during,
            readyz,
        }
    }

    /// Every renewal udhcpc started in the window was answered, the agent's counters agree, and
    /// `/readyz` said 200 throughout.
    fn check(&self, dhcp: &Udhcpc) {
        let renewed = renewals(&dhcp.seen, self.down_at, self.up_at);
        let delta = |name: &str| series(&self.during, name) - series(&self.before, name);
        let requests = delta("dhcp_server_received_total{message_type=\"request\"}");
        let acks = delta("dhcp_server_sent_total{message_type=\"ack\"}");
        let naks = delta("dhcp_server_sent_total{message_type=\"nak\"}");
        let watch_errors = delta("vmdhcp_agent_source_errors_total");
        eprintln!(
            "e2e agent outage: {:.1} s down; udhcpc started {} renewals, {} renewed, {} after \
             a broadcast retry; the agent received {requests} REQUESTs, sent {acks} ACKs and \
             {naks} NAKs; /readyz {} times 200 of {}; {watch_errors} watch errors",
            self.up_at
                .saturating_duration_since(self.down_at)
                .as_secs_f64(),
            renewed.sent,
            renewed.answered,
            renewed.broadcast_retries,
            self.readyz.iter().filter(|r| matches!(r, Ok(200))).count(),
            self.readyz.len(),
        );
        // Nearly all the renewals the window holds (the first may fall just before it).
        let minimum =
            usize::try_from(OUTAGE.as_secs() / RENEW_EVERY.as_secs() - 2).expect("a small number");
        assert!(
            renewed.sent >= minimum
                && renewed.answered == renewed.sent
                && renewed.lapses.is_empty(),
            "renewals during the outage: {renewed:?}:\n{}",
            dhcp.dump_between(self.down_at, self.up_at)
        );
        #[allow(clippy::cast_precision_loss)] // a few dozen renewals
        let renewed_f = renewed.answered as f64;
        // A REQUEST may be in flight at either scrape: one without its ACK yet.
        assert!(
            acks >= renewed_f && requests - acks <= 1.0 && naks == 0.0,
            "the agent's counters: {requests} REQUESTs, {acks} ACKs, {naks} NAKs for {} \
             renewals",
            renewed.answered
        );
        assert!(
            self.readyz.iter().all(|r| matches!(r, Ok(200))),
            "/readyz during the outage: {:?}",
            self.readyz
        );
        assert!(watch_errors >= 1.0, "the watch never noticed the outage");
    }
}

/// The private server's directory: removed when the test ends, passed or failed (declared
/// before the server, so the server is gone first), unless `VMDHCP_E2E_KEEP` is set.
struct ServerDir(PathBuf);

impl Drop for ServerDir {
    fn drop(&mut self) {
        if std::env::var_os(e2e::KEEP_ENV).is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!("{}: keeping {}", e2e::KEEP_ENV, self.0.display());
        }
    }
}
