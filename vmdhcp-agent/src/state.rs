//! What the agent serves right now: the lease table and the DHCP configuration, shared with
//! the running server, plus the options they were built from. Both modes (Kubernetes and
//! file) feed every IPPool they see into [`Served::apply`]; an IPPool that cannot be served is
//! reported and the previous table keeps serving. The IPPool itself is not kept, nor a copy of
//! the table: the server's [`StaticLeases`] is the one lease table, and the rest of the agent
//! reads it from there.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use dhcp_server::{ConfigHandle, MacAddr, StaticLeases};
use kube::Resource;
use tokio::sync::watch;
use vmdhcp_api::convert::LeaseOptions;

use crate::error::Error;
use crate::options::{self, Resolved};
use crate::pool::Pool;
use crate::table::{Changes, Skipped, Table};
use crate::{conflict, memory, metrics};

/// The agent's served state. Cheap to share (`Arc` it).
#[derive(Debug)]
pub struct Served {
    leases: StaticLeases,
    /// `None` until the first IPPool has been applied; the DHCP server starts then.
    config: watch::Sender<Option<ConfigHandle>>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    options: Option<LeaseOptions>,
    ntp: Resolved,
    /// The UID of the pool last applied (its conflict Events name it).
    uid: Option<String>,
}

/// What one [`Served::apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Leases added, removed, moved.
    pub changes: Changes,
    /// `allocated` entries not served.
    pub skipped: Vec<Skipped>,
    /// Spec entries left out of the options (`field`, `value`).
    pub ignored: Vec<(String, String)>,
    /// Whether the pool is paused (then nothing is served).
    pub paused: bool,
    /// Conflict marks lifted: the pool no longer allocates the declined address to the MAC.
    pub conflicts_lifted: Vec<(MacAddr, Ipv4Addr)>,
}

impl Default for Served {
    fn default() -> Self {
        Self::new()
    }
}

impl Served {
    /// Nothing served yet.
    pub fn new() -> Self {
        Self {
            leases: StaticLeases::new(),
            config: watch::Sender::new(None),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The lease table the DHCP server answers from.
    pub fn leases(&self) -> &StaticLeases {
        &self.leases
    }

    /// The configuration handle, once the first IPPool has been applied.
    pub fn config(&self) -> Option<ConfigHandle> {
        self.config.borrow().clone()
    }

    /// Waits until the first IPPool has been applied and returns the configuration handle.
    pub async fn configured(&self) -> ConfigHandle {
        let mut rx = self.config.subscribe();
        loop {
            if let Some(handle) = rx.borrow_and_update().clone() {
                return handle;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen while we are borrowed.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The table being served.
    pub fn table(&self) -> Table {
        Table::served_by(&self.leases)
    }

    /// The options being served, if any.
    pub fn options(&self) -> Option<LeaseOptions> {
        self.lock().options.clone()
    }

    /// NTP host names of the current options.
    pub fn ntp_hosts(&self) -> Vec<String> {
        self.lock()
            .options
            .as_ref()
            .map(options::ntp_hosts)
            .unwrap_or_default()
    }

    /// The UID of the pool last applied, if it had one.
    pub fn pool_uid(&self) -> Option<String> {
        self.lock().uid.clone()
    }

    /// Serves `pool`: its options become the configuration of the next reply and its
    /// allocations the lease table, swapped in at once. A paused pool serves no leases.
    /// Conflict marks stand while the pool allocates the declined address to the MAC, and
    /// are lifted once it does not ([`conflict::resolved`]; a paused pool lifts none: it
    /// allocates what it did). Memory the allocator holds free afterwards (what parsing the
    /// pool used) goes back to the system.
    ///
    /// # Errors
    /// When the spec cannot be served (bad CIDR or server IP, or options `dhcp-server`
    /// rejects); nothing changes then.
    pub fn apply(&self, pool: &Pool) -> Result<Applied, Error> {
        let name = pool_name(pool);
        let opts =
            LeaseOptions::from_spec(&pool.spec.ipv4_config).map_err(|source| Error::Pool {
                pool: name.clone(),
                source,
            })?;
        let mut inner = self.lock();
        let config = options::config(&opts, &inner.ntp).map_err(|source| Error::Config {
            pool: name.clone(),
            source,
        })?;
        let paused = pool.is_paused();
        let (table, skipped) = if paused {
            (Table::default(), Vec::new())
        } else {
            Table::new(&pool.allocations, &pool.spec.ipv4_config.cidr)
        };
        let changes = Table::served_by(&self.leases).diff(&table);
        self.store_config(config);
        table.install(&self.leases);
        let conflicts_lifted = if paused {
            Vec::new()
        } else {
            conflict::lift_resolved(&self.leases, &table)
        };
        inner.uid.clone_from(&pool.metadata.uid);
        let ignored = opts
            .ignored
            .iter()
            .map(|i| (i.field.clone(), i.value.clone()))
            .collect();
        inner.options = Some(opts);
        metrics::leases(table.len());
        drop(table);
        drop(inner);
        memory::release_free();
        Ok(Applied {
            changes,
            skipped,
            ignored,
            paused,
            conflicts_lifted,
        })
    }

    /// Stops serving any lease (the IPPool was deleted). The configuration stays.
    pub fn clear(&self) -> Changes {
        let inner = self.lock();
        let changes = Table::served_by(&self.leases).diff(&Table::default());
        Table::default().install(&self.leases);
        // The pool is gone, and its conflicts with it.
        conflict::lift_resolved(&self.leases, &Table::default());
        metrics::leases(0);
        drop(inner);
        memory::release_free();
        changes
    }

    /// Records a fresh NTP resolution and rebuilds the configuration with it. Returns whether
    /// the served NTP addresses changed.
    pub fn set_ntp(&self, host: &str, addrs: Vec<Ipv4Addr>) -> bool {
        let mut inner = self.lock();
        if inner.ntp.get(host) == Some(&addrs) {
            return false;
        }
        inner.ntp.insert(host.to_owned(), addrs);
        let Some(opts) = inner.options.clone() else {
            return true;
        };
        match options::config(&opts, &inner.ntp) {
            Ok(config) => self.store_config(config),
            // The options were accepted before; a new NTP address cannot make them invalid,
            // but if it did, the previous configuration keeps serving.
            Err(e) => tracing::warn!(error = %e, "NTP change not applied"),
        }
        true
    }

    /// The resolved NTP addresses.
    pub fn resolved_ntp(&self) -> BTreeMap<String, Vec<Ipv4Addr>> {
        self.lock().ntp.clone()
    }

    fn store_config(&self, config: dhcp_server::Config) {
        self.config.send_modify(|slot| match slot {
            Some(handle) => handle.store(config),
            None => *slot = Some(ConfigHandle::new(config)),
        });
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is replaced whole under the lock, so a panic elsewhere cannot leave it
        // half-updated; keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `<namespace>/<name>` of a pool (an IPPool or a [`Pool`]), for messages.
pub fn pool_name(pool: &impl Resource) -> String {
    let meta = pool.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Logs what an apply did, at the level it deserves.
pub fn log_applied(pool: &str, applied: &Applied) {
    for (field, value) in &applied.ignored {
        tracing::warn!(pool, field, value, "spec entry cannot be sent; left out");
    }
    for skipped in &applied.skipped {
        tracing::warn!(pool, "{skipped}; not served");
    }
    for (mac, ip) in &applied.changes.added {
        tracing::info!(pool, %mac, %ip, "lease added");
    }
    for (mac, old, new) in &applied.changes.changed {
        tracing::info!(pool, %mac, %old, %new, "lease moved");
    }
    for (mac, ip) in &applied.changes.removed {
        tracing::info!(pool, %mac, %ip, "lease removed");
    }
    if applied.paused {
        tracing::info!(pool, "pool is paused: no leases served");
    }
    for (mac, ip) in &applied.conflicts_lifted {
        tracing::info!(pool, %mac, %ip, "conflict mark lifted: the pool no longer allocates the address to the MAC");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_server::MacAddr;
    use serde_json::json;

    fn pool(dns: &str, allocated: &serde_json::Value) -> Pool {
        serde_json::from_value(json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net-48", "namespace": "default"},
            "spec": {"networkName": "default/net-48", "ipv4Config": {
                "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77", "dns": [dns],
                "ntp": ["ntp.example.test"],
                "pool": {"start": "192.168.48.81", "end": "192.168.48.90"}}},
            "status": {"ipv4": {"used": 1, "available": 9, "allocated": allocated}}
        }))
        .expect("fixture IPPool")
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("fixture MAC")
    }

    #[tokio::test]
    async fn first_apply_configures_later_applies_swap_options_and_leases() {
        let served = Served::new();
        assert!(served.config().is_none());
        served
            .apply(&pool(
                "1.1.1.1",
                &json!({"192.168.48.84": "ca:70:82:e6:84:6e"}),
            ))
            .expect("applies");
        let handle = served.configured().await;
        assert_eq!(
            handle.current().encoded_option(6),
            Some(&[6, 4, 1, 1, 1, 1][..])
        );
        let applied = served
            .apply(&pool(
                "8.8.8.8",
                &json!({"192.168.48.85": "ca:70:82:e6:84:6e"}),
            ))
            .expect("applies");
        // Same handle, new snapshot: a running server sees it on its next reply.
        assert_eq!(
            handle.current().encoded_option(6),
            Some(&[6, 4, 8, 8, 8, 8][..])
        );
        assert_eq!(applied.changes.changed.len(), 1);
        assert_eq!(
            served
                .leases()
                .get(mac("ca:70:82:e6:84:6e"))
                .map(|l| l.addr()),
            Some("192.168.48.85".parse().expect("ip"))
        );
    }

    #[test]
    fn an_unservable_pool_changes_nothing() {
        let served = Served::new();
        served
            .apply(&pool(
                "1.1.1.1",
                &json!({"192.168.48.84": "ca:70:82:e6:84:6e"}),
            ))
            .expect("applies");
        let mut bad = pool("1.1.1.1", &json!({}));
        bad.spec.ipv4_config.server_ip = "not-an-ip".into();
        let err = served.apply(&bad).expect_err("bad serverIP");
        assert!(err.to_string().contains("default/net-48"), "{err}");
        assert!(err.to_string().contains("not-an-ip"), "{err}");
        assert_eq!(served.leases().len(), 1);
    }

    #[test]
    fn paused_pools_and_deleted_pools_serve_nothing() {
        let served = Served::new();
        let mut p = pool("1.1.1.1", &json!({"192.168.48.84": "ca:70:82:e6:84:6e"}));
        served.apply(&p).expect("applies");
        p.spec.paused = Some(true);
        let applied = served.apply(&p).expect("applies");
        assert!(applied.paused);
        assert!(served.leases().is_empty());
        p.spec.paused = None;
        served.apply(&p).expect("applies");
        assert_eq!(served.leases().len(), 1);
        let removed = served.clear();
        assert_eq!(removed.removed.len(), 1);
        assert!(served.leases().is_empty());
    }

    #[test]
    fn a_conflict_mark_survives_rebuilds_until_the_pool_moves_the_mac() {
        let served = Served::new();
        let (m, declined) = (
            mac("ca:70:82:e6:84:6e"),
            "192.168.48.84".parse().expect("ip"),
        );
        let holds =
            json!({"192.168.48.84": "ca:70:82:e6:84:6e", "192.168.48.85": "ca:70:82:e6:84:6f"});
        served.apply(&pool("1.1.1.1", &holds)).expect("applies");
        served.leases().mark_conflict(m, declined);
        // Any later version that still allocates .84 to the MAC keeps the mark: a DNS edit, a
        // paused pool, another MAC's change.
        for next in [
            pool("8.8.8.8", &holds),
            {
                let mut p = pool("8.8.8.8", &holds);
                p.spec.paused = Some(true);
                p
            },
            pool("8.8.8.8", &json!({"192.168.48.84": "CA-70-82-E6-84-6E"})),
        ] {
            let applied = served.apply(&next).expect("applies");
            assert!(applied.conflicts_lifted.is_empty());
            assert!(served.leases().is_conflicted(m, declined));
        }
        // The controller marked .84 CONFLICT and moved the MAC to .86.
        let applied = served
            .apply(&pool(
                "8.8.8.8",
                &json!({"192.168.48.84": "CONFLICT", "192.168.48.86": "ca:70:82:e6:84:6e"}),
            ))
            .expect("applies");
        assert_eq!(applied.conflicts_lifted, [(m, declined)]);
        assert!(served.leases().conflicts().is_empty());
        assert_eq!(
            served.leases().get(m).map(|l| l.addr()),
            Some("192.168.48.86".parse().expect("ip"))
        );
        // A deleted pool takes its marks along.
        served
            .leases()
            .mark_conflict(m, "192.168.48.86".parse().expect("ip"));
        served.clear();
        assert!(served.leases().conflicts().is_empty());
    }

    #[test]
    fn ntp_resolution_rebuilds_the_config() {
        let served = Served::new();
        served.apply(&pool("1.1.1.1", &json!({}))).expect("applies");
        assert_eq!(served.ntp_hosts(), ["ntp.example.test"]);
        let handle = served.config().expect("configured");
        assert_eq!(handle.current().encoded_option(42), None);
        assert!(served.set_ntp("ntp.example.test", vec!["10.1.2.3".parse().expect("ip")]));
        assert_eq!(
            handle.current().encoded_option(42),
            Some(&[42, 4, 10, 1, 2, 3][..])
        );
        assert!(!served.set_ntp("ntp.example.test", vec!["10.1.2.3".parse().expect("ip")]));
    }
}
