//! The vmnetcfg reconciler's pure steps (upstream's `Allocate`, `Sync` and `OnChange`
//! handlers): which status entries are stale, and the status that results from a pass. The IO between them — releasing and
//! allocating addresses in IPPool statuses — is in `reconcile::vmnetcfg`.

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
use vmdhcp_api::vmnetcfg::{
    NetworkConfigStatus, VirtualMachineNetworkConfig, VirtualMachineNetworkConfigStatus,
};

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
}
