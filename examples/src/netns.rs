//! Two network namespaces, a server's and a client's, joined by a veth pair; removed (with
//! anything still running inside) when dropped, whichever way the program ends.

use std::error::Error;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use dhcp_server::{DhcpSocket, MacAddr, SocketConfig};

/// The server's end of the veth pair, inside the server namespace.
pub const SERVER_IF: &str = "demo-srv";
/// The client's end, inside the client namespace.
pub const CLIENT_IF: &str = "demo-cli";
/// The server's address on `SERVER_IF` (a /24).
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
/// The MAC address the client's end starts with.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x98, 0x00, 0x01];

/// Errors of the examples: all end up printed, none is matched on.
pub type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// The two namespaces, the veth pair between them and a scratch directory.
#[derive(Debug)]
pub struct Topology {
    /// The server namespace's name.
    pub server: String,
    /// The client namespace's name.
    pub client: String,
    /// A directory for files the example writes; removed with the namespaces.
    pub scratch: PathBuf,
    quiet: bool,
}

impl Topology {
    /// Creates `<prefix>-<pid>[-<n>]-srv` and `…-cli`, `SERVER_IF` with `SERVER_ADDR/24` in the
    /// first, `CLIENT_IF` with `CLIENT_MAC` and no address in the second, both up. The `-<n>`
    /// part keeps several topologies of one process (parallel tests) apart.
    ///
    /// # Errors
    /// When `ip` is missing or refuses (not root); whatever was created is removed again.
    pub fn create(prefix: &str) -> Result<Self> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = match SEQ.fetch_add(1, Ordering::Relaxed) {
            0 => format!("{prefix}-{}", std::process::id()),
            n => format!("{prefix}-{}-{n}", std::process::id()),
        };
        let t = Self {
            server: format!("{name}-srv"),
            client: format!("{name}-cli"),
            scratch: std::env::temp_dir().join(&name),
            quiet: false,
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
        let cidr = format!("{SERVER_ADDR}/24");
        ip(&["-n", &t.server, "addr", "add", &cidr, "dev", SERVER_IF])?;
        for (ns, dev) in [
            (&t.server, SERVER_IF),
            (&t.client, CLIENT_IF),
            (&t.server, "lo"),
            (&t.client, "lo"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(t)
    }

    /// Does not print `removed netns …` when dropped (tests).
    #[must_use]
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Runs `f` on a thread that joined the client namespace: sockets it creates stay there.
    ///
    /// # Errors
    /// When the namespace cannot be joined, or `f` fails.
    pub fn in_client<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        in_netns(&self.client, f)
    }

    /// Opens a DHCP server socket inside the server namespace.
    ///
    /// # Errors
    /// When the namespace cannot be joined or the socket cannot be bound.
    pub fn bind_server(&self, config: &SocketConfig) -> Result<DhcpSocket> {
        let config = config.clone();
        in_netns(&self.server, move || {
            DhcpSocket::bind(&config).map_err(std::io::Error::other)
        })
    }

    /// Sets the client end's MAC address (the server sees another client).
    ///
    /// # Errors
    /// When `ip` refuses.
    pub fn set_client_mac(&self, mac: &str) -> Result<()> {
        ip(&["-n", &self.client, "link", "set", CLIENT_IF, "address", mac])
    }
}

/// Runs `f` on a new thread that first joins the network namespace `ns`.
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
        if !self.quiet {
            println!("removed netns {} and {}", self.server, self.client);
        }
    }
}

/// Runs `ip` with `args`.
///
/// # Errors
/// `ip`'s own message when it fails.
pub fn ip(args: &[&str]) -> Result<()> {
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

/// `program` on `PATH` or in the usual system directories (root's `PATH` under sudo may
/// lack the `sbin` ones).
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// Why the veth examples cannot run here, if they cannot: they need root and `ip`.
pub fn unsupported() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(
            "not root: network namespaces and veth pairs need CAP_SYS_ADMIN and CAP_NET_ADMIN"
                .into(),
        );
    }
    find("ip").map_or_else(
        || Some("the `ip` command (iproute2) is not installed".into()),
        |_| None,
    )
}
