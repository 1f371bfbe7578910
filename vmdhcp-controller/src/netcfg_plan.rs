//! The vmnetcfg reconciler's pure steps (upstream's `Allocate`, `Sync` and `OnChange`
//! handlers): which status entries are stale, what to do for each NIC ([`plan_nic`], from
//! what the shell observed), and what a pass writes and says ([`finish`]: the status, the
//! Warning, whether to look again). The IO between them — observing pools, releasing and
//! allocating addresses in IPPool statuses, writing the status — is in `reconcile::vmnetcfg`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use vmdhcp_api::MacAddr;
use vmdhcp_api::condition::{set, set_result};
use vmdhcp_api::consts::{
    COND_ALLOCATED, COND_CACHE_READY, COND_DISABLED, COND_IN_SYNCED, STATE_ALLOCATED,
    STATE_PENDING, STATUS_FALSE, STATUS_TRUE,
};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::message::UpstreamError;
use vmdhcp_api::network::NamespacedName;
use vmdhcp_api::vmnetcfg::{
    NetworkConfig, NetworkConfigStatus, VirtualMachineNetworkConfig,
    VirtualMachineNetworkConfigStatus,
};

use crate::error::Error;
use crate::metrics::NicSeries;
use crate::pool_batch::{NicRequest, OpOutcome};

/// What of an IPPool decides whether vmnetcfgs on its network can be served: which pool it
/// is, whether it is being deleted, paused, and `CacheReady`. Its other changes (every
/// allocation writes its status) do not concern them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGate {
    uid: Option<String>,
    deleting: bool,
    paused: bool,
    cache_ready: bool,
}

impl PoolGate {
    /// The gate of `pool`.
    pub fn of(pool: &IPPool) -> Self {
        Self {
            uid: pool.metadata.uid.clone(),
            deleting: pool.metadata.deletion_timestamp.is_some(),
            paused: pool.is_paused(),
            cache_ready: vmdhcp_api::condition::is_true(pool.conditions(), COND_CACHE_READY),
        }
    }
}

/// The vmnetcfgs with a NIC on `pool`'s network: the ones to look at again when the pool
/// appears, goes, pauses, resumes or becomes ready (a VM can exist before its pool).
pub fn on_network_of(
    pool: &IPPool,
    vmnetcfgs: &[Arc<VirtualMachineNetworkConfig>],
) -> Vec<ObjectRef<VirtualMachineNetworkConfig>> {
    let Ok(network) = pool.network() else {
        return Vec::new();
    };
    vmnetcfgs
        .iter()
        .filter(|cfg| {
            cfg.spec
                .network_configs
                .iter()
                .any(|nic| cfg.network_of(nic).is_ok_and(|n| n == network))
        })
        .map(|cfg| ObjectRef::from_obj(cfg.as_ref()))
        .collect()
}

/// Status entries that no spec NIC wants any more: their (network, MAC) is gone from the
/// spec, or the spec now asks that MAC for another address (PR #157's keying). Their
/// addresses are released before anything is allocated.
pub fn stale(cfg: &VirtualMachineNetworkConfig) -> Vec<NetworkConfigStatus> {
    let Some(status) = &cfg.status else {
        return Vec::new();
    };
    status
        .network_configs
        .iter()
        .filter(|entry| {
            let wanted = cfg.spec.network_configs.iter().find(|nic| {
                nic.network_name == entry.network_name && same(&nic.mac_address, &entry.mac_address)
            });
            match wanted {
                None => true,
                Some(nic) => nic
                    .ip_address
                    .as_deref()
                    .is_some_and(|want| !want.is_empty() && want != entry.allocated_ip_address),
            }
        })
        .cloned()
        .collect()
}

fn same(a: &str, b: &str) -> bool {
    match (a.parse::<MacAddr>(), b.parse::<MacAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The status of a paused vmnetcfg, whose addresses have been released: every entry
/// `Pending` with its address kept (so resuming asks for the same ones), `Disabled` true, the
/// other conditions false with upstream's message.
pub fn paused(
    cfg: &VirtualMachineNetworkConfig,
    now: Timestamp,
) -> VirtualMachineNetworkConfigStatus {
    let mut status = cfg.status.clone().unwrap_or_default();
    for entry in &mut status.network_configs {
        STATE_PENDING.clone_into(&mut entry.state);
    }
    let disabled = UpstreamError::VmNetCfgDisabled {
        namespace: cfg.namespace().unwrap_or_default(),
        name: cfg.name_any(),
    }
    .to_string();
    set_result(&mut status.conditions, COND_ALLOCATED, Err(&disabled), now);
    set_result(&mut status.conditions, COND_IN_SYNCED, Err(&disabled), now);
    set(
        &mut status.conditions,
        COND_DISABLED,
        STATUS_TRUE,
        "",
        "",
        now,
    );
    status
}

/// What happened to one spec NIC in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicOutcome {
    /// It has this address.
    Allocated {
        /// The NIC's network name, as in the spec.
        network_name: String,
        /// The NIC's MAC, as in the spec.
        mac_address: String,
        /// Its address.
        ip: std::net::Ipv4Addr,
    },
    /// Its network has no IPPool: not managed here, reported, not an error.
    Unmanaged,
    /// It failed; the message names the NIC and why. Other NICs are not held back.
    Failed {
        /// The NIC's network name.
        network_name: String,
        /// The NIC's MAC.
        mac_address: String,
        /// Why.
        message: String,
    },
}

/// The status after a pass: one entry per NIC that has an address (`Allocated`), failed NICs
/// keep their previous entry as `Pending`; `Allocated` is true when no NIC failed (upstream:
/// one bad NIC failed them all), `InSynced` true (stale entries were released first),
/// `Disabled` false.
pub fn assemble(
    cfg: &VirtualMachineNetworkConfig,
    outcomes: &[NicOutcome],
    now: Timestamp,
) -> VirtualMachineNetworkConfigStatus {
    let mut status = cfg.status.clone().unwrap_or_default();
    let previous = std::mem::take(&mut status.network_configs);
    let mut errors = Vec::new();
    for outcome in outcomes {
        match outcome {
            NicOutcome::Allocated {
                network_name,
                mac_address,
                ip,
            } => {
                status.network_configs.push(NetworkConfigStatus {
                    allocated_ip_address: ip.to_string(),
                    mac_address: mac_address.clone(),
                    network_name: network_name.clone(),
                    state: STATE_ALLOCATED.to_owned(),
                });
            }
            NicOutcome::Unmanaged => {}
            NicOutcome::Failed {
                network_name,
                mac_address,
                message,
            } => {
                errors.push(message.clone());
                if let Some(prev) = previous
                    .iter()
                    .find(|e| e.network_name == *network_name && same(&e.mac_address, mac_address))
                {
                    let mut prev = prev.clone();
                    STATE_PENDING.clone_into(&mut prev.state);
                    status.network_configs.push(prev);
                }
            }
        }
    }
    let allocated = if cfg.spec.network_configs.is_empty() {
        Err(UpstreamError::NoNetworkConfigs {
            namespace: cfg.namespace().unwrap_or_default(),
            name: cfg.name_any(),
        }
        .to_string())
    } else if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    };
    set_result(
        &mut status.conditions,
        COND_ALLOCATED,
        allocated.as_ref().copied().map_err(String::as_str),
        now,
    );
    set_result(&mut status.conditions, COND_IN_SYNCED, Ok(()), now);
    set(
        &mut status.conditions,
        COND_DISABLED,
        STATUS_FALSE,
        "",
        "",
        now,
    );
    status
}

/// What the shell observed for one spec NIC: the IPPool serving its network, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicSeen {
    /// The pool serving the NIC's network (the oldest, when several claim it).
    pub pool: Option<PoolSeen>,
}

/// The pool of a NIC as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSeen {
    /// The pool's namespace.
    pub namespace: String,
    /// The pool's name.
    pub name: String,
    /// Whether it serves allocations (not paused, `CacheReady`), per the cache or, when the
    /// cache says no, per a fresh read.
    pub ready: bool,
    /// The address the pool, as watched, holds for the NIC's MAC (only looked up when ready).
    pub held: Option<Ipv4Addr>,
}

/// What to do for one spec NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicPlan {
    /// No IPPool serves its network: left alone, no entry, not an error.
    Unmanaged,
    /// Its pool does not serve allocations yet; reported (upstream's message) and retried
    /// like a failure.
    Waiting {
        /// Upstream's "not ready" message.
        message: String,
    },
    /// The address the status records is still the MAC's in the pool as watched: nothing to
    /// change, no API call (a restart over thousands of vmnetcfgs writes and reads nothing).
    Cached {
        /// That address.
        ip: Ipv4Addr,
    },
    /// Ask the pool's writer for an address.
    Allocate(Allocation),
    /// The NIC cannot be served as it is; the message names the NIC and why.
    Failed {
        /// Why.
        message: String,
    },
}

/// What a NIC asks its pool's writer for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The pool's namespace.
    pub namespace: String,
    /// The pool's name.
    pub name: String,
    /// The request.
    pub request: NicRequest,
}

/// The network and MAC that key `nic`: what the shell looks its pool and held address up by.
///
/// # Errors
/// The condition message naming the field that does not parse.
pub fn nic_target(
    cfg: &VirtualMachineNetworkConfig,
    nic: &NetworkConfig,
) -> Result<(NamespacedName, MacAddr), String> {
    let network = cfg
        .network_of(nic)
        .map_err(|e| format!("networkName {:?}: {e}", nic.network_name))?;
    let mac = nic
        .mac()
        .map_err(|e| format!("macAddress {:?}: {e}", nic.mac_address))?;
    Ok((network, mac))
}

/// Decides one NIC of `cfg` (whose stale entries are gone) from what was observed.
pub fn plan_nic(cfg: &VirtualMachineNetworkConfig, nic: &NetworkConfig, seen: &NicSeen) -> NicPlan {
    let mac = match nic_target(cfg, nic) {
        Ok((_, mac)) => mac,
        Err(message) => return NicPlan::Failed { message },
    };
    let Some(pool) = &seen.pool else {
        return NicPlan::Unmanaged;
    };
    if !pool.ready {
        return NicPlan::Waiting {
            message: UpstreamError::IpPoolNotReady {
                namespace: pool.namespace.clone(),
                name: pool.name.clone(),
            }
            .to_string(),
        };
    }
    let desired = match nic.ip_address.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                return NicPlan::Failed {
                    message: format!(
                        "ipAddress {s:?} of mac {} is not an IPv4 address",
                        nic.mac_address
                    ),
                };
            }
        },
    };
    let previous = recorded(cfg, nic, &mac);
    // A NIC without a recorded address is new, and goes to the writer without looking.
    if let (Some(previous), Some(held)) = (previous, pool.held)
        && previous == held
        && desired.is_none_or(|want| want == held)
    {
        return NicPlan::Cached { ip: held };
    }
    NicPlan::Allocate(Allocation {
        namespace: pool.namespace.clone(),
        name: pool.name.clone(),
        request: NicRequest {
            mac_text: nic.mac_address.clone(),
            mac,
            desired,
            previous,
        },
    })
}

/// The address `cfg`'s status records for `nic` (keyed by network and MAC). Only a NIC with
/// one needs the pool's held address looked up: the lookup rebuilds a view of the pool when
/// it changed, which a burst of new NICs would otherwise pay once each.
pub fn recorded(
    cfg: &VirtualMachineNetworkConfig,
    nic: &NetworkConfig,
    mac: &MacAddr,
) -> Option<Ipv4Addr> {
    cfg.status
        .iter()
        .flat_map(|s| &s.network_configs)
        .find(|e| {
            e.network_name == nic.network_name
                && e.mac_address.parse::<MacAddr>().is_ok_and(|m| m == *mac)
        })
        .and_then(|e| e.allocated_ip_address.parse().ok())
}

impl NicPlan {
    /// The NIC's outcome when the plan needs no IO, or the allocation to ask for, whose
    /// answer makes the outcome ([`allocated`]).
    ///
    /// # Errors
    /// The allocation of [`NicPlan::Allocate`].
    pub fn into_outcome(self, nic: &NetworkConfig) -> Result<NicOutcome, Allocation> {
        match self {
            Self::Unmanaged => Ok(NicOutcome::Unmanaged),
            Self::Waiting { message } | Self::Failed { message } => Ok(failed(nic, message)),
            Self::Cached { ip } => Ok(NicOutcome::Allocated {
                network_name: nic.network_name.clone(),
                mac_address: nic.mac_address.clone(),
                ip,
            }),
            Self::Allocate(allocation) => Err(allocation),
        }
    }
}

fn failed(nic: &NetworkConfig, message: String) -> NicOutcome {
    NicOutcome::Failed {
        network_name: nic.network_name.clone(),
        mac_address: nic.mac_address.clone(),
        message,
    }
}

/// The NIC's outcome from the pool writer's answer to its [`NicPlan::Allocate`].
pub fn allocated(nic: &NetworkConfig, answer: Result<OpOutcome, Error>) -> NicOutcome {
    match answer {
        // The pool's writer tells what it allocated, per batch, on the pool.
        Ok(OpOutcome::Allocated(done)) => NicOutcome::Allocated {
            network_name: nic.network_name.clone(),
            mac_address: nic.mac_address.clone(),
            ip: done.ip,
        },
        Ok(OpOutcome::Refused(message)) => failed(nic, message),
        Ok(other @ (OpOutcome::Released(_) | OpOutcome::Conflict(_))) => {
            failed(nic, format!("unexpected outcome {other:?}"))
        }
        Err(e) => failed(nic, e.condition_message()),
    }
}

/// What a pass writes and says: the status, the NIC series, the Warning to emit and whether
/// to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    /// The status to write ([`assemble`]).
    pub status: VirtualMachineNetworkConfigStatus,
    /// The `Allocated` NICs' series.
    pub series: Vec<NicSeries>,
    /// The note of an `AllocationFailed` Warning: one per new failure message, not one per
    /// retry.
    pub warning: Option<String>,
    /// Whether to reconcile again after the vmnetcfg's backoff: a failing or waiting NIC
    /// waits for something the pool's gate does not show (an address set free, a NAD
    /// appearing); otherwise the backoff is reset and the next change wakes it.
    pub retry: bool,
}

/// The pass of `cfg` as it was read, `synced` being it without its stale entries, after the
/// NICs ended as `outcomes`.
pub fn finish(
    cfg: &VirtualMachineNetworkConfig,
    synced: &VirtualMachineNetworkConfig,
    outcomes: &[NicOutcome],
    now: Timestamp,
) -> Pass {
    let status = assemble(synced, outcomes, now);
    let series = status
        .network_configs
        .iter()
        .filter(|e| e.state == STATE_ALLOCATED)
        .map(|e| NicSeries {
            network: e.network_name.clone(),
            mac: e.mac_address.clone(),
            ip: e.allocated_ip_address.clone(),
            state: e.state.clone(),
        })
        .collect();
    let failure = |st: Option<&VirtualMachineNetworkConfigStatus>| {
        st.and_then(|st| vmdhcp_api::condition::find(&st.conditions, COND_ALLOCATED))
            .filter(|c| !c.is_true())
            .map(|c| c.message.clone())
    };
    let warning =
        failure(Some(&status)).filter(|now| Some(now) != failure(cfg.status.as_ref()).as_ref());
    let retry = outcomes
        .iter()
        .any(|o| matches!(o, NicOutcome::Failed { .. }));
    Pass {
        status,
        series,
        warning,
        retry,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vmdhcp_api::condition::find;

    use super::*;

    fn cfg(
        spec_nics: &serde_json::Value,
        status_nics: &serde_json::Value,
    ) -> VirtualMachineNetworkConfig {
        serde_json::from_value(json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
            "metadata": {"name": "vm-1", "namespace": "default"},
            "spec": {"vmName": "vm-1", "networkConfigs": spec_nics},
            "status": {"networkConfigs": status_nics}
        }))
        .expect("fixture")
    }

    fn entry(network: &str, mac: &str, ip: &str) -> serde_json::Value {
        json!({"networkName": network, "macAddress": mac, "allocatedIPAddress": ip, "state": "Allocated"})
    }

    #[test]
    fn pool_changes_that_matter_reach_the_vmnetcfgs_on_its_network() {
        let mut pool = IPPool::test("default", "net-1")
            .with_cidr("10.0.1.0/24")
            .with_server("10.0.1.2")
            .with_range("10.0.1.10", "10.0.1.20");
        pool.metadata.uid = Some("u".into());
        let on = cfg(
            &json!([{"networkName": "net-1", "macAddress": "aa:aa:aa:aa:aa:01"}]),
            &json!([]),
        );
        let mut other = cfg(
            &json!([{"networkName": "default/net-2", "macAddress": "aa:aa:aa:aa:aa:02"}]),
            &json!([]),
        );
        other.metadata.name = Some("vm-2".into());
        let refs = on_network_of(&pool, &[Arc::new(on), Arc::new(other)]);
        assert_eq!(
            refs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["vm-1"]
        );

        let before = PoolGate::of(&pool);
        let mut allocated = pool.clone();
        vmdhcp_api::status::record_allocation(
            allocated.status.get_or_insert_with(Default::default),
            "10.0.1.10".parse().expect("ip"),
            "aa:aa:aa:aa:aa:01",
        );
        assert_eq!(
            PoolGate::of(&allocated),
            before,
            "an allocation is not a gate change"
        );
        let mut ready = pool.clone();
        vmdhcp_api::condition::set(
            &mut ready.status.get_or_insert_with(Default::default).conditions,
            COND_CACHE_READY,
            STATUS_TRUE,
            "",
            "",
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_ne!(PoolGate::of(&ready), before);
        assert_ne!(PoolGate::of(&pool.clone().with_paused(true)), before);
    }

    #[test]
    fn stale_entries_are_removed_macs_other_networks_and_changed_desires() {
        let c = cfg(
            &json!([
                {"networkName": "default/net-1", "macAddress": "AA:AA:AA:AA:AA:01"},
                {"networkName": "default/net-2", "macAddress": "aa:aa:aa:aa:aa:02", "ipAddress": "10.0.2.9"},
                {"networkName": "default/net-3", "macAddress": "aa:aa:aa:aa:aa:03", "ipAddress": "10.0.3.5"}
            ]),
            &json!([
                entry("default/net-1", "aa:aa:aa:aa:aa:01", "10.0.1.5"),
                entry("default/net-2", "aa:aa:aa:aa:aa:02", "10.0.2.5"),
                entry("default/net-3", "aa:aa:aa:aa:aa:03", "10.0.3.5"),
                entry("default/net-1", "aa:aa:aa:aa:aa:04", "10.0.1.6"),
                entry("default/net-9", "aa:aa:aa:aa:aa:01", "10.0.9.5")
            ]),
        );
        let stale: Vec<String> = stale(&c)
            .into_iter()
            .map(|e| e.allocated_ip_address)
            .collect();
        assert_eq!(stale, ["10.0.2.5", "10.0.1.6", "10.0.9.5"]);
    }

    #[test]
    fn one_failing_nic_does_not_drop_the_others() {
        let c = cfg(
            &json!([
                {"networkName": "default/net-1", "macAddress": "aa:aa:aa:aa:aa:01"},
                {"networkName": "default/net-2", "macAddress": "aa:aa:aa:aa:aa:02"},
                {"networkName": "default/pods", "macAddress": "aa:aa:aa:aa:aa:03"}
            ]),
            &json!([entry("default/net-2", "aa:aa:aa:aa:aa:02", "10.0.2.5")]),
        );
        let now = jiff::Timestamp::UNIX_EPOCH;
        let status = assemble(
            &c,
            &[
                NicOutcome::Allocated {
                    network_name: "default/net-1".into(),
                    mac_address: "aa:aa:aa:aa:aa:01".into(),
                    ip: "10.0.1.5".parse().expect("ip"),
                },
                NicOutcome::Failed {
                    network_name: "default/net-2".into(),
                    mac_address: "aa:aa:aa:aa:aa:02".into(),
                    message: "ippool default/net-2 is not ready".into(),
                },
                NicOutcome::Unmanaged,
            ],
            now,
        );
        let entries: Vec<(&str, &str)> = status
            .network_configs
            .iter()
            .map(|e| (e.allocated_ip_address.as_str(), e.state.as_str()))
            .collect();
        assert_eq!(
            entries,
            [("10.0.1.5", "Allocated"), ("10.0.2.5", "Pending")]
        );
        let allocated = find(&status.conditions, COND_ALLOCATED).expect("condition");
        assert_eq!(
            (allocated.status.as_str(), allocated.message.as_str()),
            ("False", "ippool default/net-2 is not ready")
        );
        assert!(
            find(&status.conditions, COND_IN_SYNCED)
                .is_some_and(vmdhcp_api::condition::Condition::is_true)
        );
        assert!(find(&status.conditions, COND_DISABLED).is_some_and(|c| c.status == "False"));
    }

    #[test]
    fn no_nics_is_upstreams_error_and_pausing_keeps_addresses_pending() {
        let empty = cfg(&json!([]), &json!([]));
        let status = assemble(&empty, &[], jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(
            find(&status.conditions, COND_ALLOCATED)
                .expect("set")
                .message,
            "no network configs found for vmnetcfg default/vm-1"
        );

        let c = cfg(
            &json!([{"networkName": "default/net-1", "macAddress": "aa:aa:aa:aa:aa:01"}]),
            &json!([entry("default/net-1", "aa:aa:aa:aa:aa:01", "10.0.1.5")]),
        );
        let status = paused(&c, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(status.network_configs[0].state, "Pending");
        assert_eq!(status.network_configs[0].allocated_ip_address, "10.0.1.5");
        assert_eq!(
            find(&status.conditions, COND_ALLOCATED)
                .expect("set")
                .message,
            "vmnetcfg default/vm-1 was administratively disabled"
        );
        assert!(
            find(&status.conditions, COND_DISABLED)
                .is_some_and(vmdhcp_api::condition::Condition::is_true)
        );
    }

    /// A NIC's plan in one line: what the tables compare.
    fn summary(plan: &NicPlan) -> String {
        match plan {
            NicPlan::Unmanaged => "unmanaged".into(),
            NicPlan::Waiting { message } => format!("waiting: {message}"),
            NicPlan::Cached { ip } => format!("cached {ip}"),
            NicPlan::Allocate(a) => format!(
                "allocate in {}/{}: mac {} desired {:?} previous {:?}",
                a.namespace,
                a.name,
                a.request.mac_text,
                a.request.desired.map(|ip| ip.to_string()),
                a.request.previous.map(|ip| ip.to_string())
            ),
            NicPlan::Failed { message } => format!("failed: {message}"),
        }
    }

    /// The pool serving the NIC's network, `pool-1` (named apart from the network so that
    /// messages show which is which); `None`: no pool.
    fn seen(pool: Option<(bool, Option<&str>)>) -> NicSeen {
        NicSeen {
            pool: pool.map(|(ready, held)| PoolSeen {
                namespace: "default".into(),
                name: "pool-1".into(),
                ready,
                held: held.map(|ip| ip.parse().expect("ip")),
            }),
        }
    }

    const READY: Option<(bool, Option<&str>)> = Some((true, None));
    const HELD_5: Option<(bool, Option<&str>)> = Some((true, Some("10.0.1.5")));
    const MAC: &str = "aa:aa:aa:aa:aa:01";

    #[rstest::rstest]
    #[case::network_without_name(
        json!({"networkName": "default/", "macAddress": MAC}), json!([]), READY,
        "failed: networkName \"default/\": invalid network name \"default/\": the name part is empty"
    )]
    #[case::mac_that_does_not_parse(
        json!({"networkName": "net-1", "macAddress": "aa:bb"}), json!([]), READY,
        "failed: macAddress \"aa:bb\": invalid MAC address \"aa:bb\": expected six hex octets as aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff"
    )]
    #[case::bad_mac_fails_even_without_a_pool(
        json!({"networkName": "net-9", "macAddress": "zz"}), json!([]), None,
        "failed: macAddress \"zz\": invalid MAC address \"zz\": expected six hex octets as aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff"
    )]
    #[case::no_pool_serves_the_network(
        json!({"networkName": "net-9", "macAddress": MAC}), json!([]), None,
        "unmanaged"
    )]
    #[case::pool_not_ready(
        json!({"networkName": "net-1", "macAddress": MAC}), json!([]), Some((false, None)),
        "waiting: ippool default/pool-1 is not ready"
    )]
    #[case::not_ready_is_told_before_a_bad_desired_address(
        json!({"networkName": "net-1", "macAddress": MAC, "ipAddress": "10.0.1"}), json!([]), Some((false, None)),
        "waiting: ippool default/pool-1 is not ready"
    )]
    #[case::desired_address_not_ipv4(
        json!({"networkName": "net-1", "macAddress": MAC, "ipAddress": "10.0.1"}), json!([]), READY,
        "failed: ipAddress \"10.0.1\" of mac aa:aa:aa:aa:aa:01 is not an IPv4 address"
    )]
    #[case::new_nic_goes_to_the_writer(
        json!({"networkName": "net-1", "macAddress": MAC}), json!([]), HELD_5,
        "allocate in default/pool-1: mac aa:aa:aa:aa:aa:01 desired None previous None"
    )]
    #[case::empty_desired_address_is_none(
        json!({"networkName": "net-1", "macAddress": MAC, "ipAddress": ""}), json!([]), READY,
        "allocate in default/pool-1: mac aa:aa:aa:aa:aa:01 desired None previous None"
    )]
    #[case::recorded_address_still_held(
        json!({"networkName": "net-1", "macAddress": MAC}), json!([entry("net-1", MAC, "10.0.1.5")]), HELD_5,
        "cached 10.0.1.5"
    )]
    #[case::recorded_mac_spelled_otherwise(
        json!({"networkName": "net-1", "macAddress": "AA-AA-AA-AA-AA-01"}), json!([entry("net-1", MAC, "10.0.1.5")]), HELD_5,
        "cached 10.0.1.5"
    )]
    #[case::desired_address_is_the_held_one(
        json!({"networkName": "net-1", "macAddress": MAC, "ipAddress": "10.0.1.5"}), json!([entry("net-1", MAC, "10.0.1.5")]), HELD_5,
        "cached 10.0.1.5"
    )]
    #[case::desired_address_differs_from_the_held_one(
        json!({"networkName": "net-1", "macAddress": MAC, "ipAddress": "10.0.1.9"}), json!([entry("net-1", MAC, "10.0.1.5")]), HELD_5,
        "allocate in default/pool-1: mac aa:aa:aa:aa:aa:01 desired Some(\"10.0.1.9\") previous Some(\"10.0.1.5\")"
    )]
    #[case::pool_holds_another_address(
        json!({"networkName": "net-1", "macAddress": MAC}), json!([entry("net-1", MAC, "10.0.1.5")]), Some((true, Some("10.0.1.6"))),
        "allocate in default/pool-1: mac aa:aa:aa:aa:aa:01 desired None previous Some(\"10.0.1.5\")"
    )]
    #[case::pool_holds_nothing_for_the_mac(
        json!({"networkName": "net-1", "macAddress": MAC}), json!([entry("net-1", MAC, "10.0.1.5")]), READY,
        "allocate in default/pool-1: mac aa:aa:aa:aa:aa:01 desired None previous Some(\"10.0.1.5\")"
    )]
    #[case::recorded_on_another_network_is_not_this_nics(
        json!({"networkName": "net-1", "macAddress": MAC}), json!([entry("net-2", MAC, "10.0.1.5")]), HELD_5,
        "allocate in default/pool-1: mac aa:aa:aa:aa:aa:01 desired None previous None"
    )]
    fn nic_plans(
        #[case] nic: serde_json::Value,
        #[case] status: serde_json::Value,
        #[case] pool: Option<(bool, Option<&str>)>,
        #[case] want: &str,
    ) {
        let c = cfg(&json!([nic]), &status);
        let plan = plan_nic(&c, &c.spec.network_configs[0], &seen(pool));
        assert_eq!(summary(&plan), want);
    }

    #[rstest::rstest]
    #[case::unmanaged(Ok(NicPlan::Unmanaged), "unmanaged")]
    #[case::waiting_is_reported_as_a_failure(Ok(NicPlan::Waiting { message: "ippool default/pool-1 is not ready".into() }), "failed: ippool default/pool-1 is not ready")]
    #[case::failed(Ok(NicPlan::Failed { message: "no".into() }), "failed: no")]
    #[case::cached(Ok(NicPlan::Cached { ip: "10.0.1.5".parse().expect("ip") }), "allocated 10.0.1.5")]
    #[case::refused(answer(Ok(OpOutcome::Refused("ippool default/pool-1 has no free address".into()))), "failed: ippool default/pool-1 has no free address")]
    #[case::allocated(answer(Ok(OpOutcome::Allocated(crate::alloc::Allocated { ip: "10.0.1.7".parse().expect("ip"), new: true }))), "allocated 10.0.1.7")]
    #[case::release_answer_is_unexpected(
        answer(Ok(OpOutcome::Released(true))),
        "failed: unexpected outcome Released(true)"
    )]
    #[case::pool_gone_shows_the_api_servers_message(
        answer(Err(Error::PoolWrite { object: "ippool default/pool-1".into(), failure: crate::error::PoolWriteFailure::Gone("ippools.network.harvesterhci.io \"pool-1\" not found".into()) })),
        "failed: ippools.network.harvesterhci.io \"pool-1\" not found"
    )]
    fn nic_outcomes(#[case] plan: Result<NicPlan, NicOutcome>, #[case] want: &str) {
        let c = cfg(
            &json!([{"networkName": "net-1", "macAddress": MAC}]),
            &json!([]),
        );
        let nic = &c.spec.network_configs[0];
        let outcome = match plan {
            Ok(plan) => plan
                .into_outcome(nic)
                .expect("plans without IO settle at once"),
            Err(outcome) => outcome,
        };
        let got = match outcome {
            NicOutcome::Unmanaged => "unmanaged".to_owned(),
            NicOutcome::Allocated {
                network_name,
                mac_address,
                ip,
            } => {
                assert_eq!(
                    (network_name.as_str(), mac_address.as_str()),
                    ("net-1", MAC)
                );
                format!("allocated {ip}")
            }
            NicOutcome::Failed {
                network_name,
                mac_address,
                message,
            } => {
                assert_eq!(
                    (network_name.as_str(), mac_address.as_str()),
                    ("net-1", MAC)
                );
                format!("failed: {message}")
            }
        };
        assert_eq!(got, want);
    }

    /// The outcome of the writer's `answer` to an allocation for `net-1`/[`MAC`].
    fn answer(answer: Result<OpOutcome, Error>) -> Result<NicPlan, NicOutcome> {
        let c = cfg(
            &json!([{"networkName": "net-1", "macAddress": MAC}]),
            &json!([]),
        );
        Err(allocated(&c.spec.network_configs[0], answer))
    }

    #[test]
    fn an_allocation_is_not_settled_without_the_writer() {
        let c = cfg(
            &json!([{"networkName": "net-1", "macAddress": MAC}]),
            &json!([]),
        );
        let nic = &c.spec.network_configs[0];
        let plan = plan_nic(&c, nic, &seen(READY));
        assert!(matches!(plan.into_outcome(nic), Err(Allocation { name, .. }) if name == "pool-1"));
    }

    fn ok(ip: &str) -> NicOutcome {
        NicOutcome::Allocated {
            network_name: "net-1".into(),
            mac_address: MAC.into(),
            ip: ip.parse().expect("ip"),
        }
    }

    fn err(message: &str) -> NicOutcome {
        NicOutcome::Failed {
            network_name: "net-1".into(),
            mac_address: MAC.into(),
            message: message.into(),
        }
    }

    #[rstest::rstest]
    #[case::all_allocated(None, vec![ok("10.0.1.5")], None, false, 1)]
    #[case::first_failure_warns_and_retries(None, vec![err("x")], Some("x"), true, 0)]
    #[case::same_failure_again_retries_quietly(Some("x"), vec![err("x")], None, true, 0)]
    #[case::another_failure_warns(Some("y"), vec![err("x")], Some("x"), true, 0)]
    #[case::recovery_is_quiet(Some("x"), vec![ok("10.0.1.5")], None, false, 1)]
    #[case::unmanaged_only_waits_for_a_change(None, vec![NicOutcome::Unmanaged], None, false, 0)]
    #[case::one_failure_among_allocations(None, vec![ok("10.0.1.5"), err("x")], Some("x"), true, 1)]
    fn passes(
        #[case] failing_before: Option<&str>,
        #[case] outcomes: Vec<NicOutcome>,
        #[case] warning: Option<&str>,
        #[case] retry: bool,
        #[case] series: usize,
    ) {
        let mut c = cfg(
            &json!([{"networkName": "net-1", "macAddress": MAC}, {"networkName": "net-1", "macAddress": MAC}]),
            &json!([]),
        );
        let now = jiff::Timestamp::UNIX_EPOCH;
        if let Some(message) = failing_before {
            let status = c.status.get_or_insert_with(Default::default);
            set_result(&mut status.conditions, COND_ALLOCATED, Err(message), now);
        }
        let pass = finish(&c, &c, &outcomes, now);
        assert_eq!(pass.warning.as_deref(), warning);
        assert_eq!(pass.retry, retry);
        assert_eq!(pass.series.len(), series);
        assert!(
            pass.series
                .iter()
                .all(|s| s.state == STATE_ALLOCATED && s.mac == MAC)
        );
    }

    #[test]
    fn a_vmnetcfg_without_nics_warns_once_and_waits_for_a_change() {
        let c = cfg(&json!([]), &json!([]));
        let now = jiff::Timestamp::UNIX_EPOCH;
        let first = finish(&c, &c, &[], now);
        assert_eq!(
            (first.warning.as_deref(), first.retry),
            (
                Some("no network configs found for vmnetcfg default/vm-1"),
                false
            )
        );
        let mut again = c.clone();
        again.status = Some(first.status);
        assert_eq!(finish(&again, &again, &[], now).warning, None);
    }
}
