//! The examples keep working: each test runs a built example binary (cargo builds
//! examples along with the tests) and checks what it prints. The veth demo needs root; without
//! it those tests print `skipping: <reason>` and pass, and the refusal itself is checked.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vmdhcp_examples::prereq::unavailable as skip;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// The example's binary, next to this test's (`target/<profile>/examples/`); built with the
/// same cargo when it is not there (e.g. a test run filtered to this file only).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    if !path.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "vmdhcp-examples", "--example", name])
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build --example {name} failed");
    }
    path
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// The namespaces a demo run with this pid would have created.
fn leftover_namespaces(demo_prefix: &str, pid: u32) -> Vec<String> {
    let out = run(Command::new("ip").args(["netns", "list"]));
    let prefix = format!("{demo_prefix}-{pid}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn veth_unsupported() -> Option<String> {
    if !is_root() {
        return Some("not root (the veth demo creates network namespaces)".into());
    }
    find("ip").map_or_else(|| Some("`ip` (iproute2) is not installed".into()), |_| None)
}

/// The lease line both veth demos print for the client's MAC.
const LEASE: &str = "lease: address 10.98.0.50 mask 255.255.255.0 router 10.98.0.1 dns 10.98.0.53 \
                     domain demo.test lease time 3600 s server 10.98.0.1";

/// Runs a veth demo to completion with `args`, checks that it used `client`, printed
/// [`LEASE`] and removed its namespaces (`<prefix>-<pid>-*`); returns its stdout and a dump of
/// everything for messages.
fn run_demo(example_name: &str, prefix: &str, args: &[&str], client: &str) -> (String, String) {
    let child = Command::new(example(example_name))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {example_name}: {e}"));
    let pid = child.id();
    let out = child.wait_with_output().expect("the demo runs");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains(&format!("client: {client}")), "{all}");
    let lease = stdout
        .lines()
        .find(|l| l.starts_with("lease: "))
        .unwrap_or_else(|| panic!("no lease line\n{all}"));
    assert_eq!(lease, LEASE, "{all}");
    assert!(stdout.contains("removed netns"), "{all}");
    assert_eq!(
        leftover_namespaces(prefix, pid),
        Vec::<String>::new(),
        "{all}"
    );
    (stdout, all)
}

/// The library demo: its server's events are printed too.
fn veth_demo(args: &[&str], client: &str) {
    let (stdout, all) = run_demo("dhcp_veth", "vmdhcp-demo", args, client);
    assert!(stdout.contains("server event: offered 10.98.0.50"), "{all}");
    assert!(stdout.contains("server event: acked 10.98.0.50"), "{all}");
}

#[test]
fn veth_demo_leases_to_udhcpc() {
    if let Some(reason) = veth_unsupported() {
        return skip(&reason);
    }
    let Some(udhcpc) = find("udhcpc") else {
        return skip("udhcpc (busybox) is not installed; the built-in client test still runs");
    };
    veth_demo(&[], &udhcpc.display().to_string());
}

#[test]
fn veth_demo_leases_to_the_builtin_client() {
    if let Some(reason) = veth_unsupported() {
        return skip(&reason);
    }
    veth_demo(&["--builtin-client"], "built-in");
}

#[test]
fn veth_demo_cleans_up_on_ctrl_c() {
    if let Some(reason) = veth_unsupported() {
        return skip(&reason);
    }
    let mut child = Command::new(example("dhcp_veth"))
        .args(["--builtin-client", "--keep"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dhcp_veth");
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            let _ = tx.send(line);
        }
        seen
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut serving = false;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.starts_with("serving until Ctrl-C") {
            serving = true;
            break;
        }
    }
    // While it serves, its namespaces exist; Ctrl-C must take them away.
    let during = leftover_namespaces("vmdhcp-demo", pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal the demo");
    let status = child.wait().expect("dhcp_veth exits");
    let seen = reader.join().expect("reader");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(serving, "never got to serving:\n{seen}\n{stderr}");
    assert_eq!(during.len(), 2, "{during:?}");
    assert!(status.success(), "{status}\n{seen}\n{stderr}");
    assert!(seen.contains("removed netns"), "{seen}");
    assert_eq!(
        leftover_namespaces("vmdhcp-demo", pid),
        Vec::<String>::new()
    );
}

#[test]
fn veth_demo_without_root_says_so_and_fails() {
    let binary = example("dhcp_veth");
    let out = if is_root() {
        // Drop to nobody, from a copy it can execute wherever the build directory lives.
        let Some(setpriv) = find("setpriv") else {
            return skip("setpriv (util-linux) is not installed: cannot drop root");
        };
        let dir = std::env::temp_dir().join(format!("vmdhcp-example-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let copy = dir.join("dhcp_veth");
        std::fs::copy(&binary, &copy).expect("copy the example");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let out = run(Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&copy));
        let _ = std::fs::remove_dir_all(&dir);
        out
    } else {
        run(&mut Command::new(binary))
    };
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dhcp_veth needs root"), "{}", text(&out));
}

#[test]
fn embed_example_serves_itself_on_loopback_and_applies_changes() {
    let out = run(&mut Command::new(example("dhcp_embed")));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let offers: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("client "))
        .collect();
    assert_eq!(
        offers,
        [
            "client 02:00:00:00:00:01: offered 127.0.0.50, DNS [127.0.0.1]",
            "client 02:00:00:00:00:01: offered 127.0.0.51, DNS [127.0.0.53]",
        ],
        "{all}"
    );
    assert!(stdout.contains("event: offered 127.0.0.50"), "{all}");
    assert!(stdout.contains("stopped"), "{all}");
}

/// The README's first command: the agent in standalone mode leases to a real client.
fn agent_demo(args: &[&str], client: &str) {
    let (stdout, all) = run_demo("agent_veth", "vmdhcp-agent-demo", args, client);
    // The address came from the vmnetcfg in the file, allocated by the agent.
    assert!(
        stdout.contains("lease added") && stdout.contains("mac=02:00:00:98:00:01 ip=10.98.0.50"),
        "{all}"
    );
    assert!(
        stdout.contains("acked 10.98.0.50 to 02:00:00:98:00:01"),
        "{all}"
    );
}

#[test]
fn agent_demo_leases_to_udhcpc() {
    if let Some(reason) = veth_unsupported() {
        return skip(&reason);
    }
    let Some(udhcpc) = find("udhcpc") else {
        return skip("udhcpc (busybox) is not installed; the built-in client test still runs");
    };
    agent_demo(&[], &udhcpc.display().to_string());
}

#[test]
fn agent_demo_leases_to_the_builtin_client() {
    if let Some(reason) = veth_unsupported() {
        return skip(&reason);
    }
    agent_demo(&["--builtin-client"], "built-in");
}
