//! The driver both veth demos share: flags, the root check, a tokio runtime, the namespace
//! pair (removed whichever way the demo ends: success, error, Ctrl-C), and the exit code.

use std::process::ExitCode;

use dhcp_server::MacAddr;
use tokio::signal::unix::{SignalKind, signal};

use crate::netns::{CLIENT_IF, CLIENT_MAC, Result, SERVER_ADDR, SERVER_IF, Topology, find};

/// The demo's flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--builtin-client`: skip udhcpc.
    pub builtin_client: bool,
    /// `--keep`: keep serving after the lease until Ctrl-C.
    pub keep: bool,
}

/// A signal that ends the demo: resolves to `"interrupted"` or `"terminated"`.
pub type Stop = std::pin::Pin<Box<dyn Future<Output = &'static str>>>;

/// Runs the demo `name`: parses `--builtin-client` and `--keep`, checks for root and `ip`,
/// creates the namespaces `<prefix>-<pid>-{srv,cli}`, runs `demo` on a current-thread
/// runtime, removes the namespaces and reports. `threads` > 1 runs a multi-thread runtime.
pub fn run<D>(name: &str, prefix: &str, threads: usize, demo: D) -> ExitCode
where
    D: AsyncFnOnce(&Topology, Flags, Stop) -> Result<()>,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = Flags {
        builtin_client: args.iter().any(|a| a == "--builtin-client"),
        keep: args.iter().any(|a| a == "--keep"),
    };
    if let Some(other) = args
        .iter()
        .find(|a| !matches!(a.as_str(), "--builtin-client" | "--keep"))
    {
        eprintln!("unknown argument {other}; usage: {name} [--builtin-client] [--keep]");
        return ExitCode::from(2);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "{name} needs root: it creates network namespaces and a veth pair \
             (CAP_SYS_ADMIN, CAP_NET_ADMIN). Run it with sudo, e.g.\n  sudo {}",
            std::env::args().next().unwrap_or_else(|| name.into())
        );
        return ExitCode::FAILURE;
    }
    if find("ip").is_none() {
        eprintln!("{name} needs the `ip` command (Debian package iproute2)");
        return ExitCode::FAILURE;
    }
    let built = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The topology lives outside the async part, so it is removed whichever way that ends.
    let topology = match Topology::create(prefix) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot create the namespaces: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "created netns {} ({SERVER_IF} {SERVER_ADDR}/24) and {} ({CLIENT_IF} {}, no address)",
        topology.server,
        topology.client,
        MacAddr::new(CLIENT_MAC)
    );
    let result = runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let stop: Stop = Box::pin(async move {
            tokio::select! {
                _ = interrupt.recv() => "interrupted",
                _ = terminate.recv() => "terminated",
            }
        });
        demo(&topology, flags, stop).await
    });
    // Dropping the runtime ends the server task and kills a client still running.
    drop(runtime);
    drop(topology);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
