//! Upstream's three gauges, kept in a private registry as upstream does, so series of deleted
//! or paused pools and of released addresses can be removed — upstream left them behind, with
//! a label mismatch on pool deletion.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use vmdhcp_api::consts::{
    METRIC_IPPOOL_AVAILABLE, METRIC_IPPOOL_AVAILABLE_HELP, METRIC_IPPOOL_USED,
    METRIC_IPPOOL_USED_HELP, METRIC_VMNETCFG_STATUS, METRIC_VMNETCFG_STATUS_HELP,
};

/// The series of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSeries {
    /// `cidr` label.
    pub cidr: String,
    /// `network` label (`spec.networkName`).
    pub network: String,
    /// Allocated addresses.
    pub used: u32,
    /// Free addresses.
    pub available: u32,
}

/// One NIC's series of a vmnetcfg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSeries {
    /// `network` label.
    pub network: String,
    /// `mac` label.
    pub mac: String,
    /// `ip` label.
    pub ip: String,
    /// `state` label.
    pub state: String,
}

/// The registry: series keyed by `<ns>/<name>` of their object.
#[derive(Debug, Default)]
pub struct Registry {
    pools: Mutex<BTreeMap<String, PoolSeries>>,
    nics: Mutex<BTreeMap<String, Vec<NicSeries>>>,
}

impl Registry {
    /// Sets the series of pool `key`.
    pub fn set_pool(&self, key: &str, series: PoolSeries) {
        lock(&self.pools).insert(key.to_owned(), series);
    }

    /// Removes the series of pool `key`.
    pub fn remove_pool(&self, key: &str) {
        lock(&self.pools).remove(key);
    }

    /// Sets the NIC series of vmnetcfg `key` (replacing its previous ones).
    pub fn set_nics(&self, key: &str, series: Vec<NicSeries>) {
        let mut nics = lock(&self.nics);
        if series.is_empty() {
            nics.remove(key);
        } else {
            nics.insert(key.to_owned(), series);
        }
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let pools = lock(&self.pools);
        for (name, help, value) in [
            (
                METRIC_IPPOOL_USED,
                METRIC_IPPOOL_USED_HELP,
                (|s: &PoolSeries| s.used) as fn(&PoolSeries) -> u32,
            ),
            (
                METRIC_IPPOOL_AVAILABLE,
                METRIC_IPPOOL_AVAILABLE_HELP,
                |s: &PoolSeries| s.available,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (key, s) in pools.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{cidr=\"{}\",ippool=\"{}\",network=\"{}\"}} {}",
                    escape(&s.cidr),
                    escape(key),
                    escape(&s.network),
                    value(s)
                );
            }
        }
        drop(pools);
        let name = METRIC_VMNETCFG_STATUS;
        let _ = writeln!(
            out,
            "# HELP {name} {METRIC_VMNETCFG_STATUS_HELP}\n# TYPE {name} gauge"
        );
        for (key, series) in lock(&self.nics).iter() {
            for s in series {
                let _ = writeln!(
                    out,
                    "{name}{{ip=\"{}\",mac=\"{}\",network=\"{}\",state=\"{}\",vmnetcfg=\"{}\"}} 1",
                    escape(&s.ip),
                    escape(&s.mac),
                    escape(&s.network),
                    escape(&s.state),
                    escape(key)
                );
            }
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_with_upstreams_names_and_go_away_when_removed() {
        let r = Registry::default();
        r.set_pool(
            "default/net-48",
            PoolSeries {
                cidr: "192.168.48.0/24".into(),
                network: "default/net-48".into(),
                used: 1,
                available: 7,
            },
        );
        r.set_nics(
            "default/vm-1",
            vec![NicSeries {
                network: "default/net-48".into(),
                mac: "ca:70:82:e6:84:6e".into(),
                ip: "192.168.48.84".into(),
                state: "Allocated".into(),
            }],
        );
        let text = r.render();
        assert!(text.contains("# HELP vmdhcpcontroller_ippool_used Amount of IP addresses which are in use\n# TYPE vmdhcpcontroller_ippool_used gauge\n"), "{text}");
        assert!(text.contains("vmdhcpcontroller_ippool_used{cidr=\"192.168.48.0/24\",ippool=\"default/net-48\",network=\"default/net-48\"} 1\n"), "{text}");
        assert!(text.contains("vmdhcpcontroller_ippool_available{cidr=\"192.168.48.0/24\",ippool=\"default/net-48\",network=\"default/net-48\"} 7\n"), "{text}");
        assert!(text.contains("vmdhcpcontroller_vmnetcfg_status{ip=\"192.168.48.84\",mac=\"ca:70:82:e6:84:6e\",network=\"default/net-48\",state=\"Allocated\",vmnetcfg=\"default/vm-1\"} 1\n"), "{text}");
        r.remove_pool("default/net-48");
        r.set_nics("default/vm-1", Vec::new());
        let text = r.render();
        assert!(!text.contains("default/net-48"), "{text}");
    }
}
