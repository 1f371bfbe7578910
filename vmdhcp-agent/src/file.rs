//! Standalone mode's source: one YAML file holding the IPPool a user would `kubectl apply`
//! (with `status.ipv4.allocated`, as the controller writes it) and, optionally,
//! VirtualMachineNetworkConfig documents whose NICs on the pool's network get addresses here,
//! with the controller's own allocation rules ([`vmdhcp_api::alloc`]).

use std::hash::Hasher;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use vmdhcp_api::alloc::{self, Allocator, Request};
use vmdhcp_api::ippool::{IPPool, IPPoolStatus};
use vmdhcp_api::network::resolve_network_name;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use crate::error::Error;
use crate::metrics;
use crate::pool::Pool;
use crate::state::{self, Served};

/// How often the file is checked for changes. Polling the content (not inotify) also follows
/// editors and `kubectl`-style tools that replace the file instead of writing it in place.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Parses the file's text into the IPPool to serve: the pool with every vmnetcfg NIC on its
/// network allocated into `status.ipv4.allocated`.
///
/// Rules: exactly one `IPPool` document; any number of `VirtualMachineNetworkConfig`
/// documents; empty documents are ignored; any other kind is an error. A NIC whose MAC
/// already has an address keeps it (unless its `ipAddress` names another: then it moves); a NIC
/// with `ipAddress` gets that address or an error; the others get the address their
/// vmnetcfg's status recorded when it is still free, else the lowest free address, in document
/// order — so the same file always gives the
/// same table. Paused vmnetcfgs and NICs on other networks are left alone.
///
/// # Errors
/// [`Error::BadFile`] naming the document and the offending value.
pub fn parse(path: &Path, text: &str) -> Result<IPPool, Error> {
    let bad = |reason: String| Error::BadFile {
        path: path.to_owned(),
        reason,
    };
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let mut pools = Vec::new();
    let mut cfgs = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let n = i + 1;
        if doc.is_null() {
            continue;
        }
        let kind = doc
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "IPPool" => pools.push(
                serde_json::from_value::<IPPool>(doc)
                    .map_err(|e| bad(format!("document {n} (IPPool): {e}")))?,
            ),
            "VirtualMachineNetworkConfig" => cfgs.push(
                serde_json::from_value::<VirtualMachineNetworkConfig>(doc)
                    .map_err(|e| bad(format!("document {n} (VirtualMachineNetworkConfig): {e}")))?,
            ),
            other => {
                return Err(bad(format!(
                    "document {n}: kind {other:?} is neither IPPool nor VirtualMachineNetworkConfig"
                )));
            }
        }
    }
    let mut pool = match pools.len() {
        1 => pools.remove(0),
        0 => return Err(bad("no IPPool document".into())),
        n => {
            return Err(bad(format!(
                "{n} IPPool documents; one file serves one pool"
            )));
        }
    };
    if pool.metadata.namespace.is_none() {
        pool.metadata.namespace = Some("default".into());
    }
    allocate(&mut pool, &cfgs).map_err(bad)?;
    Ok(pool)
}

/// Allocates every vmnetcfg NIC on the pool's network into the pool's status, with the
/// controller's rules ([`vmdhcp_api::alloc`]).
fn allocate(pool: &mut IPPool, cfgs: &[VirtualMachineNetworkConfig]) -> Result<(), String> {
    let name = state::pool_name(pool);
    let network = pool.network().map_err(|e| format!("IPPool {name}: {e}"))?;
    let mut alloc = Allocator::rebuild(pool).map_err(|e| format!("IPPool {name}: {e}"))?;
    for cfg in cfgs {
        if cfg.spec.paused == Some(true) {
            continue;
        }
        let ns = cfg.metadata.namespace.as_deref().unwrap_or("default");
        let cfg_name = format!("{ns}/{}", cfg.metadata.name.as_deref().unwrap_or(""));
        for (i, nic) in cfg.spec.network_configs.iter().enumerate() {
            let at = || format!("vmnetcfg {cfg_name} networkConfigs[{i}]");
            let nic_net = resolve_network_name(&nic.network_name, ns)
                .map_err(|e| format!("{}: {e}", at()))?;
            if nic_net != network {
                continue;
            }
            let mac = nic.mac().map_err(|e| format!("{}: {e}", at()))?;
            let desired = match nic.ip_address.as_deref().filter(|s| !s.is_empty()) {
                Some(wanted) => Some(
                    wanted
                        .parse::<Ipv4Addr>()
                        .map_err(|_| format!("{}: ipAddress {wanted:?} is not IPv4", at()))?,
                ),
                None => None,
            };
            // What the vmnetcfg's status last recorded for this MAC, as the controller prefers it.
            let previous = cfg
                .status
                .iter()
                .flat_map(|s| &s.network_configs)
                .filter(|st| st.mac_address.parse().ok() == Some(mac))
                .find_map(|st| st.allocated_ip_address.parse().ok());
            let req = Request {
                mac_text: &nic.mac_address,
                mac,
                desired,
                previous,
            };
            alloc::allocate(pool, &mut alloc, &req)
                .map_err(|e| format!("{}: MAC {}: {e}", at(), nic.mac_address))?;
        }
    }
    let status = pool.status.get_or_insert_with(IPPoolStatus::default);
    vmdhcp_api::status::refresh_ipv4(status, &pool.spec.ipv4_config, &alloc.ipam);
    Ok(())
}

/// What the agent remembers of a file's content to notice a change: its length and a 64-bit
/// `SipHash` of its bytes. Keeping the text itself (two megabytes at 50,000 allocations) only to
/// compare it once a second would cost more than the lease table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    len: u64,
    hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut f = Fingerprinter::default();
        f.write(bytes);
        f.finish()
    }

    /// The fingerprint of the file at `path`, read in small chunks (the file is not held in
    /// memory).
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let mut f = Fingerprinter::default();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => return Ok(f.finish()),
                Ok(n) => f.write(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Feeds bytes in any chunking to the same hash: `Hasher::write` of `SipHash` is a stream (the
/// fingerprints never outlive the process, so the unspecified algorithm of `DefaultHasher` does
/// not matter).
#[derive(Default)]
struct Fingerprinter {
    len: u64,
    hasher: std::hash::DefaultHasher,
}

impl Fingerprinter {
    fn write(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        self.hasher.write(bytes);
    }

    fn finish(&self) -> Fingerprint {
        Fingerprint {
            len: self.len,
            hash: self.hasher.finish(),
        }
    }
}

/// Reads and parses `path` into what the agent keeps of the pool; the text and the parsed
/// documents are dropped before this returns.
///
/// # Errors
/// [`Error::ReadFile`] or [`Error::BadFile`].
pub fn load(path: &Path) -> Result<(Fingerprint, Pool), Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let pool = parse(path, &text)?;
    Ok((Fingerprint::of(text.as_bytes()), Pool::from(&pool)))
}

/// Follows the file: whenever its content changes, parses and applies it. An unreadable or
/// invalid version is logged and counted, and the last good table keeps serving. Each check
/// reads the file in chunks to fingerprint it; only a changed file is read whole and parsed.
pub async fn follow(
    path: PathBuf,
    served: &Served,
    mut last: Fingerprint,
    options_changed: &Notify,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing: Option<String> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || Fingerprint::read(&path)).await
        };
        match now {
            Ok(Ok(now)) if now == last => continue,
            // Changed, unreadable, or the blocking pool is shutting down: read it whole below,
            // which reports the error if there is one.
            _ => {}
        }
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(source) => {
                let e = Error::ReadFile {
                    path: path.clone(),
                    source,
                }
                .to_string();
                if failing.as_ref() != Some(&e) {
                    tracing::error!("{e}; still serving the last good version");
                    metrics::source_error();
                    failing = Some(e);
                }
                continue;
            }
        };
        let read = Fingerprint::of(text.as_bytes());
        if read == last {
            continue;
        }
        last = read;
        let parsed = parse(&path, &text).map(|pool| Pool::from(&pool));
        drop(text);
        match parsed.and_then(|pool| {
            let name = state::pool_name(&pool);
            served.apply(&pool).map(|applied| (name, applied))
        }) {
            Ok((name, applied)) => {
                metrics::sync(true);
                failing = None;
                tracing::info!(file = %path.display(), leases = served.leases().len(), "reloaded");
                state::log_applied(&name, &applied);
                options_changed.notify_one();
            }
            Err(e) => {
                metrics::sync(false);
                tracing::error!("{e}; still serving the last good version");
                failing = Some(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = r"
apiVersion: network.harvesterhci.io/v1alpha1
kind: IPPool
metadata:
  name: net-48
  namespace: default
spec:
  networkName: default/net-48
  ipv4Config:
    cidr: 192.168.48.0/24
    serverIP: 192.168.48.77
    router: 192.168.48.1
    pool:
      start: 192.168.48.81
      end: 192.168.48.90
      exclude: [192.168.48.81]
status:
  ipv4:
    allocated:
      192.168.48.81: EXCLUDED
      192.168.48.84: ca:70:82:e6:84:6e
";

    fn vmnetcfg(name: &str, network: &str, mac: &str, ip: Option<&str>) -> String {
        let ip = ip
            .map(|ip| format!("\n      ipAddress: {ip}"))
            .unwrap_or_default();
        format!(
            r"---
apiVersion: network.harvesterhci.io/v1alpha1
kind: VirtualMachineNetworkConfig
metadata:
  name: {name}
  namespace: default
spec:
  vmName: {name}
  networkConfigs:
    - networkName: {network}
      macAddress: {mac}{ip}
"
        )
    }

    fn path() -> PathBuf {
        PathBuf::from("/etc/vmdhcp/pool.yaml")
    }

    fn addr(pool: &IPPool, mac: &str) -> Option<String> {
        pool.allocated()
            .find(|(_, m)| *m == mac)
            .map(|(ip, _)| ip.to_owned())
    }

    #[test]
    fn the_pool_alone_keeps_its_status() {
        let pool = parse(&path(), POOL).expect("valid");
        assert_eq!(
            addr(&pool, "ca:70:82:e6:84:6e").as_deref(),
            Some("192.168.48.84")
        );
        let v4 = pool.status.and_then(|s| s.ipv4).expect("status");
        assert_eq!((v4.used, v4.available), (1, 8));
    }

    #[test]
    fn vmnetcfg_nics_get_the_lowest_free_address_or_the_one_they_ask_for() {
        let text = format!(
            "{POOL}{}{}{}{}",
            vmnetcfg("vm-a", "net-48", "02:00:00:00:00:0a", None),
            vmnetcfg(
                "vm-b",
                "default/net-48",
                "02:00:00:00:00:0b",
                Some("192.168.48.88")
            ),
            vmnetcfg("vm-c", "other-net", "02:00:00:00:00:0c", None),
            vmnetcfg("vm-d", "net-48", "CA-70-82-E6-84-6E", None),
        );
        let pool = parse(&path(), &text).expect("valid");
        assert_eq!(
            addr(&pool, "02:00:00:00:00:0a").as_deref(),
            Some("192.168.48.82")
        );
        assert_eq!(
            addr(&pool, "02:00:00:00:00:0b").as_deref(),
            Some("192.168.48.88")
        );
        assert_eq!(addr(&pool, "02:00:00:00:00:0c"), None, "other network");
        // Already allocated under another spelling: kept, not allocated twice.
        assert_eq!(
            pool.allocated()
                .filter(|(_, m)| m.starts_with("ca"))
                .count(),
            1
        );
        // Same file, same answer.
        assert_eq!(parse(&path(), &text).expect("valid"), pool);
    }

    #[test]
    fn errors_name_the_document_and_value() {
        let cases = [
            ("", "no IPPool document"),
            (&format!("{POOL}---\n{POOL}") as &str, "2 IPPool documents"),
            ("kind: Pod\napiVersion: v1\n", "kind \"Pod\""),
            ("kind: IPPool\nspec: 3\n", "document 1 (IPPool)"),
            (": : :\n  - [", "not YAML"),
        ];
        for (text, want) in cases {
            let err = parse(&path(), text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.starts_with("/etc/vmdhcp/pool.yaml: "), "{err}");
        }
        let taken = format!(
            "{POOL}{}",
            vmnetcfg("vm-x", "net-48", "02:00:00:00:00:0a", Some("192.168.48.84"))
        );
        let err = parse(&path(), &taken)
            .expect_err("address taken")
            .to_string();
        assert!(
            err.contains(
                "vmnetcfg default/vm-x networkConfigs[0]: MAC 02:00:00:00:00:0a: \
                 designated ip 192.168.48.84 is already allocated"
            ),
            "{err}"
        );
        let bad_mac = format!("{POOL}{}", vmnetcfg("vm-y", "net-48", "zz:zz", None));
        let err = parse(&path(), &bad_mac).expect_err("bad MAC").to_string();
        assert!(err.contains("vm-y") && err.contains("zz:zz"), "{err}");
    }

    #[test]
    fn an_exhausted_pool_names_the_mac_that_got_nothing() {
        let mut text = POOL.to_owned();
        for i in 0..9 {
            text.push_str(&vmnetcfg(
                &format!("vm-{i}"),
                "net-48",
                &format!("02:00:00:00:01:{i:02x}"),
                None,
            ));
        }
        let err = parse(&path(), &text)
            .expect_err("9 NICs, 8 free")
            .to_string();
        assert!(err.contains("02:00:00:00:01:08"), "{err}");
    }

    #[test]
    fn a_file_read_in_chunks_has_the_fingerprint_of_its_text() {
        let dir = std::env::temp_dir().join(format!("vmdhcp-agent-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("pool.yaml");
        // Longer than one chunk and not a multiple of it or of SipHash's 8-byte words.
        let text = (0..40_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        std::fs::write(&file, &text).expect("write");
        let read = Fingerprint::read(&file).expect("read");
        assert_eq!(read, Fingerprint::of(text.as_bytes()));
        let mut changed = text.clone().into_bytes();
        changed[20_000] ^= 1;
        assert_ne!(read, Fingerprint::of(&changed));
        assert_ne!(read, Fingerprint::of(&text.as_bytes()[1..]));
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(Fingerprint::read(&file).is_err());
    }
}
