//! Upstream's three gauges, kept in a private registry as upstream does, so series of deleted
//! or paused pools and of released addresses can be removed — upstream left them behind, with
//! a label mismatch on pool deletion. Beside them, this controller's own reconcile counters
//! and durations per kind (counted by [`crate::reconcile::measured`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

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

/// The reconcilers whose passes are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// IPPools.
    IpPool,
    /// VirtualMachineNetworkConfigs.
    VmNetCfg,
    /// KubeVirt VirtualMachines.
    Vm,
}

impl Kind {
    /// Every kind, in the order rendered.
    pub const ALL: [Self; 3] = [Self::IpPool, Self::VmNetCfg, Self::Vm];

    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::IpPool => "ippool",
            Self::VmNetCfg => "vmnetcfg",
            Self::Vm => "vm",
        }
    }
}

/// Upper bounds (seconds) of the reconcile duration buckets: a cached pass takes
/// milliseconds, one that waits for a pool's batch or the API server up to seconds.
pub const DURATION_BUCKETS: [f64; 8] = [0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// `vmdhcp_controller_reconcile_total{kind,result}`.
pub const METRIC_RECONCILE_TOTAL: &str = "vmdhcp_controller_reconcile_total";
/// `vmdhcp_controller_reconcile_errors_total{kind,error}`.
pub const METRIC_RECONCILE_ERRORS: &str = "vmdhcp_controller_reconcile_errors_total";
/// `vmdhcp_controller_reconcile_duration_seconds{kind}`, a histogram.
pub const METRIC_RECONCILE_DURATION: &str = "vmdhcp_controller_reconcile_duration_seconds";

/// The reconcile counters and durations of one kind.
#[derive(Debug, Default, Clone)]
struct KindStats {
    ok: u64,
    error: u64,
    /// By [`crate::error::Error::metric_label`].
    errors: BTreeMap<&'static str, u64>,
    /// Per bucket of [`DURATION_BUCKETS`], not cumulative (summed when rendered).
    buckets: [u64; DURATION_BUCKETS.len()],
    sum: f64,
}

/// The registry: series keyed by `<ns>/<name>` of their object.
#[derive(Debug, Default)]
pub struct Registry {
    pools: Mutex<BTreeMap<String, PoolSeries>>,
    nics: Mutex<BTreeMap<String, Vec<NicSeries>>>,
    reconciles: Mutex<BTreeMap<Kind, KindStats>>,
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
        self.render_reconciles(&mut out);
        out
    }

    /// Counts one reconcile of `kind` that took `took` and failed with the error labelled
    /// `error`, or succeeded (`None`).
    pub fn record_reconcile(&self, kind: Kind, took: Duration, error: Option<&'static str>) {
        let mut stats = lock(&self.reconciles);
        let s = stats.entry(kind).or_default();
        match error {
            None => s.ok += 1,
            Some(label) => {
                s.error += 1;
                *s.errors.entry(label).or_default() += 1;
            }
        }
        let secs = took.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|le| secs <= *le) {
            s.buckets[i] += 1;
        }
        s.sum += secs;
    }

    fn render_reconciles(&self, out: &mut String) {
        let stats = lock(&self.reconciles);
        // Every kind and result from the start, so that rates exist before the first error.
        let of = |kind: Kind| stats.get(&kind).cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP {METRIC_RECONCILE_TOTAL} Reconciles by kind and result (ok, error).\n# TYPE {METRIC_RECONCILE_TOTAL} counter"
        );
        for kind in Kind::ALL {
            let s = of(kind);
            for (result, n) in [("ok", s.ok), ("error", s.error)] {
                let _ = writeln!(
                    out,
                    "{METRIC_RECONCILE_TOTAL}{{kind=\"{}\",result=\"{result}\"}} {n}",
                    kind.label()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {METRIC_RECONCILE_ERRORS} Failed reconciles by kind and error.\n# TYPE {METRIC_RECONCILE_ERRORS} counter"
        );
        for kind in Kind::ALL {
            for (label, n) in &of(kind).errors {
                let _ = writeln!(
                    out,
                    "{METRIC_RECONCILE_ERRORS}{{error=\"{}\",kind=\"{}\"}} {n}",
                    escape(label),
                    kind.label()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {METRIC_RECONCILE_DURATION} Duration of reconciles by kind.\n# TYPE {METRIC_RECONCILE_DURATION} histogram"
        );
        for kind in Kind::ALL {
            let s = of(kind);
            let k = kind.label();
            let mut cumulative = 0;
            for (le, n) in DURATION_BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{METRIC_RECONCILE_DURATION}_bucket{{kind=\"{k}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let count = s.ok + s.error;
            let _ = writeln!(
                out,
                "{METRIC_RECONCILE_DURATION}_bucket{{kind=\"{k}\",le=\"+Inf\"}} {count}\n{METRIC_RECONCILE_DURATION}_sum{{kind=\"{k}\"}} {}\n{METRIC_RECONCILE_DURATION}_count{{kind=\"{k}\"}} {count}",
                s.sum
            );
        }
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

    #[test]
    fn reconciles_count_by_kind_result_and_error_with_cumulative_buckets() {
        let r = Registry::default();
        let text = r.render();
        // Every kind's counters and histogram exist before the first reconcile.
        for kind in ["ippool", "vmnetcfg", "vm"] {
            for result in ["ok", "error"] {
                let line = format!(
                    "vmdhcp_controller_reconcile_total{{kind=\"{kind}\",result=\"{result}\"}} 0\n"
                );
                assert!(text.contains(&line), "{text}");
            }
            let line = format!(
                "vmdhcp_controller_reconcile_duration_seconds_count{{kind=\"{kind}\"}} 0\n"
            );
            assert!(text.contains(&line), "{text}");
        }
        assert!(
            !text.contains("vmdhcp_controller_reconcile_errors_total{"),
            "{text}"
        );

        // Binary fractions of a second, so that the sum renders exactly.
        r.record_reconcile(Kind::VmNetCfg, Duration::from_nanos(3_906_250), None);
        r.record_reconcile(Kind::VmNetCfg, Duration::from_micros(62_500), Some("kube"));
        r.record_reconcile(Kind::VmNetCfg, Duration::from_secs(30), Some("kube"));
        r.record_reconcile(Kind::IpPool, Duration::from_millis(200), Some("steps"));
        let text = r.render();
        for line in [
            "# TYPE vmdhcp_controller_reconcile_total counter\n",
            "vmdhcp_controller_reconcile_total{kind=\"vmnetcfg\",result=\"ok\"} 1\n",
            "vmdhcp_controller_reconcile_total{kind=\"vmnetcfg\",result=\"error\"} 2\n",
            "vmdhcp_controller_reconcile_total{kind=\"ippool\",result=\"error\"} 1\n",
            "vmdhcp_controller_reconcile_total{kind=\"vm\",result=\"ok\"} 0\n",
            "# TYPE vmdhcp_controller_reconcile_errors_total counter\n",
            "vmdhcp_controller_reconcile_errors_total{error=\"kube\",kind=\"vmnetcfg\"} 2\n",
            "vmdhcp_controller_reconcile_errors_total{error=\"steps\",kind=\"ippool\"} 1\n",
            "# TYPE vmdhcp_controller_reconcile_duration_seconds histogram\n",
            "vmdhcp_controller_reconcile_duration_seconds_bucket{kind=\"vmnetcfg\",le=\"0.005\"} 1\n",
            "vmdhcp_controller_reconcile_duration_seconds_bucket{kind=\"vmnetcfg\",le=\"0.05\"} 1\n",
            "vmdhcp_controller_reconcile_duration_seconds_bucket{kind=\"vmnetcfg\",le=\"0.1\"} 2\n",
            "vmdhcp_controller_reconcile_duration_seconds_bucket{kind=\"vmnetcfg\",le=\"10\"} 2\n",
            "vmdhcp_controller_reconcile_duration_seconds_bucket{kind=\"vmnetcfg\",le=\"+Inf\"} 3\n",
            "vmdhcp_controller_reconcile_duration_seconds_sum{kind=\"vmnetcfg\"} 30.06640625\n",
            "vmdhcp_controller_reconcile_duration_seconds_count{kind=\"vmnetcfg\"} 3\n",
            "vmdhcp_controller_reconcile_duration_seconds_bucket{kind=\"ippool\",le=\"0.1\"} 0\n",
            "vmdhcp_controller_reconcile_duration_seconds_bucket{kind=\"ippool\",le=\"0.5\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
