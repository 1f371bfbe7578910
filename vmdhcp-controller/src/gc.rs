//! Orphan collection that never surprises: which allocations of an IPPool whose MAC no
//! vmnetcfg holds may be released, and when.
//!
//! An allocation is released only when this process has seen its MAC on the pool's network in
//! a vmnetcfg (spec or status) and that vmnetcfg has been gone — confirmed by the API server,
//! not just by the watch cache — for longer than the grace period. Everything else stays:
//! entries written by hand, entries of vmnetcfgs this process never saw (it restarted after
//! they went), `EXCLUDED`/`RESERVED` marks (never candidates: they are not MACs), and entries
//! whose vmnetcfg still exists (it releases its own stale entries). Upstream never releases any
//! of them; a leak is preferred to a surprise. The memory is in-process only: a restart
//! forgets it, and whatever was orphaned before is then kept.
//!
//! [`Owners`] is the memory; [`decide`] the pure decision, table-tested.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use vmdhcp_api::MacAddr;
use vmdhcp_api::network::NamespacedName;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

/// A vmnetcfg as seen: which object (its UID tells it from one recreated under its name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Namespace and name.
    pub vmnetcfg: NamespacedName,
    /// Its UID.
    pub uid: String,
}

/// The API server's answer about an [`Owner`], read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// `GET` answered 404, or the name belongs to another object (another UID).
    Gone,
    /// The object still exists.
    Present,
    /// The read failed: nothing is known.
    Unknown,
}

/// What is known about the owner of one candidate allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Gone, first confirmed at `since`.
    Gone {
        /// The first confirmation.
        since: Timestamp,
    },
    /// Still there.
    Present,
    /// Not known (the read failed).
    Unknown,
}

/// One allocation whose MAC no vmnetcfg holds (checked against a fresh list), with what is
/// remembered and known about the vmnetcfg that held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The address.
    pub ip: Ipv4Addr,
    /// The MAC as the pool's status spells it.
    pub mac: String,
    /// The vmnetcfg this process saw holding the MAC on the pool's network, if any.
    pub owner: Option<Owner>,
    /// What the API server said about it.
    pub state: OwnerState,
}

/// An allocation to release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The address.
    pub ip: Ipv4Addr,
    /// The MAC as the pool's status spells it.
    pub mac: String,
    /// The vmnetcfg that held it.
    pub owner: Owner,
    /// When it was first confirmed gone.
    pub gone_since: Timestamp,
}

/// Why an allocation is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Collection is off (`--orphan-grace-secs 0`).
    Off,
    /// No vmnetcfg was seen holding the MAC: written by hand, or before this process started.
    NeverSeen,
    /// The vmnetcfg that held it still exists.
    OwnerExists,
    /// Whether the vmnetcfg exists could not be read.
    OwnerUnknown,
}

/// What to do with one [`Candidate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Release it now.
    Release(Release),
    /// Its vmnetcfg is gone, but not for long enough: look again at `at`.
    Wait {
        /// When the grace period ends.
        at: Timestamp,
    },
    /// Keep it.
    Keep(Keep),
}

/// Decides one candidate: released only when its remembered vmnetcfg has been gone for more
/// than `grace` (`None`: collection off) at `now`.
pub fn decide(candidate: &Candidate, now: Timestamp, grace: Option<Duration>) -> Verdict {
    let Some(grace) = grace else {
        return Verdict::Keep(Keep::Off);
    };
    let Some(owner) = &candidate.owner else {
        return Verdict::Keep(Keep::NeverSeen);
    };
    let since = match candidate.state {
        OwnerState::Present => return Verdict::Keep(Keep::OwnerExists),
        OwnerState::Unknown => return Verdict::Keep(Keep::OwnerUnknown),
        OwnerState::Gone { since } => since,
    };
    // A grace beyond jiff's range is a grace that never ends.
    let Some(at) = SignedDuration::try_from(grace)
        .ok()
        .and_then(|g| since.checked_add(g).ok())
    else {
        return Verdict::Wait { at: Timestamp::MAX };
    };
    if now > at {
        Verdict::Release(Release {
            ip: candidate.ip,
            mac: candidate.mac.clone(),
            owner: owner.clone(),
            gone_since: since,
        })
    } else {
        Verdict::Wait { at }
    }
}

/// [`Owners`] shared by the reconcilers: the vmnetcfg reconciler records, the IPPool
/// reconciler confirms and prunes.
#[derive(Debug, Default)]
pub struct Memory(std::sync::Mutex<Owners>);

impl Memory {
    /// The memory, locked (a poisoned lock is taken over: the map stays consistent).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The memory: which vmnetcfg was seen holding which MAC on which network, and since when
/// each vmnetcfg has been confirmed gone.
#[derive(Debug, Default)]
pub struct Owners {
    seen: HashMap<(NamespacedName, MacAddr), Owner>,
    gone_since: HashMap<Owner, Timestamp>,
}

impl Owners {
    /// Remembers the MACs `cfg` holds, per network: its spec NICs and its status entries.
    /// An object without a UID (not from the API server) is not remembered.
    pub fn record(&mut self, cfg: &VirtualMachineNetworkConfig) {
        let Some(uid) = cfg.uid() else {
            return;
        };
        let namespace = cfg.namespace().unwrap_or_default();
        let owner = Owner {
            vmnetcfg: NamespacedName::new(namespace.clone(), cfg.name_any()),
            uid,
        };
        let spec = cfg
            .spec
            .network_configs
            .iter()
            .filter_map(|nic| Some((cfg.network_of(nic).ok()?, nic.mac().ok()?)));
        let status = cfg
            .status
            .iter()
            .flat_map(|s| &s.network_configs)
            .filter_map(|e| {
                Some((
                    vmdhcp_api::network::resolve_network_name(&e.network_name, &namespace).ok()?,
                    e.mac_address.parse::<MacAddr>().ok()?,
                ))
            });
        for key in spec.chain(status).collect::<Vec<_>>() {
            self.seen.insert(key, owner.clone());
        }
        self.gone_since.remove(&owner);
    }

    /// The vmnetcfg seen holding `mac` on `network`.
    pub fn owner(&self, network: &NamespacedName, mac: &MacAddr) -> Option<&Owner> {
        self.seen.get(&(network.clone(), *mac))
    }

    /// Records what the API server said about `owner` at `now`: the first confirmation of its
    /// absence starts its grace period; its presence (or a recreation seen by [`record`]) ends
    /// it.
    ///
    /// [`record`]: Owners::record
    pub fn confirm(&mut self, owner: &Owner, found: Found, now: Timestamp) -> OwnerState {
        match found {
            Found::Gone => OwnerState::Gone {
                since: *self.gone_since.entry(owner.clone()).or_insert(now),
            },
            Found::Present => {
                self.gone_since.remove(owner);
                OwnerState::Present
            }
            Found::Unknown => OwnerState::Unknown,
        }
    }

    /// Forgets the MACs on `network` that hold nothing in its pool (`allocated` says whether a
    /// MAC does) and whose vmnetcfg is not there any more (`exists`): nothing is left to
    /// release for them. Keeps the memory as large as what is still in question.
    pub fn prune(
        &mut self,
        network: &NamespacedName,
        allocated: impl Fn(&MacAddr) -> bool,
        exists: impl Fn(&Owner) -> bool,
    ) {
        self.seen
            .retain(|(net, mac), owner| net != network || allocated(mac) || exists(owner));
        let seen = &self.seen;
        self.gone_since
            .retain(|owner, _| seen.values().any(|o| o == owner));
    }

    /// How many (network, MAC) pairs are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn owner() -> Owner {
        Owner {
            vmnetcfg: NamespacedName::new("default", "vm-1"),
            uid: "uid-1".into(),
        }
    }

    fn candidate(owner: Option<Owner>, state: OwnerState) -> Candidate {
        Candidate {
            ip: "10.0.0.5".parse().expect("ip"),
            mac: "52:54:00:00:00:01".into(),
            owner,
            state,
        }
    }

    #[test]
    fn only_a_remembered_vmnetcfg_gone_past_the_grace_releases() {
        let grace = Some(Duration::from_secs(600));
        let now = t("2026-01-01T01:00:00Z");
        let gone = |since: &str| OwnerState::Gone { since: t(since) };
        let release = |since: &str| {
            Verdict::Release(Release {
                ip: "10.0.0.5".parse().expect("ip"),
                mac: "52:54:00:00:00:01".into(),
                owner: owner(),
                gone_since: t(since),
            })
        };
        let cases: [(&str, Candidate, Option<Duration>, Verdict); 8] = [
            (
                "hand-written or seen before a restart",
                candidate(None, gone("2026-01-01T00:00:00Z")),
                grace,
                Verdict::Keep(Keep::NeverSeen),
            ),
            (
                "never seen, never confirmed",
                candidate(None, OwnerState::Unknown),
                grace,
                Verdict::Keep(Keep::NeverSeen),
            ),
            (
                "the vmnetcfg still exists",
                candidate(Some(owner()), OwnerState::Present),
                grace,
                Verdict::Keep(Keep::OwnerExists),
            ),
            (
                "the read failed",
                candidate(Some(owner()), OwnerState::Unknown),
                grace,
                Verdict::Keep(Keep::OwnerUnknown),
            ),
            (
                "gone 1 minute: wait",
                candidate(Some(owner()), gone("2026-01-01T00:59:00Z")),
                grace,
                Verdict::Wait {
                    at: t("2026-01-01T01:09:00Z"),
                },
            ),
            (
                "gone exactly the grace: wait",
                candidate(Some(owner()), gone("2026-01-01T00:50:00Z")),
                grace,
                Verdict::Wait {
                    at: t("2026-01-01T01:00:00Z"),
                },
            ),
            (
                "gone past the grace",
                candidate(Some(owner()), gone("2026-01-01T00:49:59Z")),
                grace,
                release("2026-01-01T00:49:59Z"),
            ),
            (
                "collection off",
                candidate(Some(owner()), gone("2025-01-01T00:00:00Z")),
                None,
                Verdict::Keep(Keep::Off),
            ),
        ];
        for (what, c, grace, want) in cases {
            assert_eq!(decide(&c, now, grace), want, "{what}");
        }
        assert_eq!(
            decide(
                &candidate(Some(owner()), gone("2026-01-01T00:00:00Z")),
                now,
                Some(Duration::MAX)
            ),
            Verdict::Wait { at: Timestamp::MAX },
            "a grace beyond any date never ends"
        );
    }

    fn cfg(
        uid: &str,
        spec: &serde_json::Value,
        status: &serde_json::Value,
    ) -> VirtualMachineNetworkConfig {
        serde_json::from_value(json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
            "metadata": {"name": "vm-1", "namespace": "default", "uid": uid},
            "spec": {"vmName": "vm-1", "networkConfigs": spec},
            "status": {"networkConfigs": status}
        }))
        .expect("vmnetcfg")
    }

    #[test]
    fn the_memory_holds_spec_and_status_macs_per_network_and_forgets_what_holds_nothing() {
        let net_a = NamespacedName::new("default", "net-a");
        let net_b = NamespacedName::new("other", "net-b");
        let mac = |s: &str| s.parse::<MacAddr>().expect("mac");
        let mut owners = Owners::default();
        owners.record(&cfg(
            "uid-1",
            &json!([{"networkName": "net-a", "macAddress": "52:54:00:00:00:01"}]),
            &json!([{"networkName": "other/net-b", "macAddress": "52-54-00-00-00-02", "allocatedIPAddress": "10.0.1.5", "state": "Allocated"}]),
        ));
        assert_eq!(
            owners.owner(&net_a, &mac("52:54:00:00:00:01")),
            Some(&owner())
        );
        assert_eq!(
            owners.owner(&net_b, &mac("52:54:00:00:00:02")),
            Some(&owner()),
            "status entries count, MACs in any spelling"
        );
        assert_eq!(
            owners.owner(&net_b, &mac("52:54:00:00:00:01")),
            None,
            "per network"
        );

        let now = t("2026-01-01T00:00:00Z");
        assert_eq!(
            owners.confirm(&owner(), Found::Gone, now),
            OwnerState::Gone { since: now }
        );
        assert_eq!(
            owners.confirm(&owner(), Found::Gone, t("2026-01-01T00:05:00Z")),
            OwnerState::Gone { since: now },
            "the grace runs from the first confirmation"
        );
        assert_eq!(
            owners.confirm(&owner(), Found::Unknown, now),
            OwnerState::Unknown
        );
        assert_eq!(
            owners.confirm(&owner(), Found::Present, now),
            OwnerState::Present
        );
        assert_eq!(
            owners.confirm(&owner(), Found::Gone, t("2026-01-01T00:06:00Z")),
            OwnerState::Gone {
                since: t("2026-01-01T00:06:00Z")
            },
            "presence restarts the grace"
        );
        owners.record(&cfg("uid-1", &json!([]), &json!([])));
        assert_eq!(
            owners.confirm(&owner(), Found::Gone, t("2026-01-01T00:07:00Z")),
            OwnerState::Gone {
                since: t("2026-01-01T00:07:00Z")
            },
            "seeing it again restarts the grace"
        );

        // Pruning net-a: the MAC still allocated stays, whatever its owner.
        owners.prune(&net_a, |_| true, |_| false);
        assert_eq!(owners.len(), 2);
        // Owner still there: stays.
        owners.prune(&net_a, |_| false, |_| true);
        assert_eq!(owners.len(), 2);
        // Nothing allocated, owner gone: forgotten, on that network only.
        owners.prune(&net_a, |_| false, |_| false);
        assert_eq!(owners.owner(&net_a, &mac("52:54:00:00:00:01")), None);
        assert!(owners.owner(&net_b, &mac("52:54:00:00:00:02")).is_some());
        owners.prune(&net_b, |_| false, |_| false);
        assert!(owners.is_empty());

        owners.record(&{
            let mut c = cfg(
                "",
                &json!([{"networkName": "net-a", "macAddress": "52:54:00:00:00:01"}]),
                &json!([]),
            );
            c.metadata.uid = None;
            c
        });
        assert!(
            owners.is_empty(),
            "an object without UID is not from the API server"
        );
    }
}
