//! Address conflicts: a client declines its address (DHCPDECLINE: another host answers for
//! it, RFC 2131 §4.4.1), and the address must not be offered again.
//!
//! The lease table ([`dhcp_server::StaticLeases`]) marks the pair (MAC, address) in conflict
//! itself when the DECLINE names the client's own address, and stops offering it to that
//! client. The rest is the agent's:
//!
//! - **the mark lasts** across table rebuilds for as long as the pool still allocates that
//!   address to that MAC, and is lifted when it no longer does ([`resolved`], applied by
//!   [`Served::apply`](crate::state::Served::apply)): the controller moved the NIC and marked
//!   the address `CONFLICT` in the pool's status, or the operator edited the file;
//! - **it is counted** ([`metrics::CONFLICTS_TOTAL`], [`metrics::CONFLICTS`]) and logged as a
//!   warning;
//! - **it is reported**, in Kubernetes mode, as a Warning Event on the IPPool
//!   ([`vmdhcp_api::conflict::agent_event`]: reason `AddressConflict`, annotations naming the
//!   address and the MAC) for the controller to act on; once per conflict while it is marked
//!   ([`Reported`]), so a client that keeps declining does not flood the API server. In
//!   standalone (file) mode there is nobody to tell: the log and the metrics are all.
//!
//! A mark lives in the agent's memory: an agent that restarts before the controller has acted
//! offers the address again, and the client, finding it in use again, declines it again.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dhcp_server::{Event, EventKind, MacAddr, StaticLeases};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::Client;
use kube::api::{Api, PostParams};
use vmdhcp_api::conflict::{Conflict, PoolRef};

use crate::metrics;
use crate::state::Served;
use crate::table::Table;

/// Where conflicts are reported.
#[derive(Clone)]
pub enum Sink {
    /// A Warning Event on the IPPool `namespace/name`, reported as `instance` (the Pod).
    Kube {
        /// The client.
        client: Client,
        /// The pool's namespace.
        namespace: String,
        /// The pool's name.
        name: String,
        /// `reportingInstance`.
        instance: String,
    },
    /// Standalone mode: log and metrics only.
    Log,
}

/// The conflict a server event reports: a DECLINE the lease table accepted (the client's own
/// address, now marked).
pub fn declined(event: &Event) -> Option<Conflict> {
    if event.kind() != EventKind::Declined {
        return None;
    }
    let mac = event.client().mac()?;
    Some(Conflict {
        ip: event.addr(),
        mac: vmdhcp_api::MacAddr::from(mac.octets()),
    })
}

/// What the Event's note says about the client beyond its MAC: its client identifier and the
/// transaction.
pub fn detail(event: &Event) -> String {
    let mut out = String::new();
    if let Some(id) = event.client_id().filter(|id| !id.is_empty()) {
        out.push_str("client id ");
        for (i, b) in id.iter().enumerate() {
            let sep = if i == 0 { "" } else { ":" };
            let _ = write!(out, "{sep}{b:02x}");
        }
        out.push_str(", ");
    }
    let _ = write!(out, "xid {:#010x}", event.xid());
    out
}

/// The marked conflicts `table` no longer backs: the MAC has another address or none. Their
/// marks are to be lifted (the pool moved the MAC, or the address is now the pool's
/// `CONFLICT` mark and nobody's lease).
pub fn resolved(marked: &[(MacAddr, Ipv4Addr)], table: &Table) -> Vec<(MacAddr, Ipv4Addr)> {
    marked
        .iter()
        .copied()
        .filter(|(mac, ip)| table.get(*mac) != Some(*ip))
        .collect()
}

/// The conflicts reported while their mark stands.
#[derive(Debug, Default)]
pub struct Reported(HashSet<Conflict>);

impl Reported {
    /// Whether `conflict` is new: not reported since it was last marked. `marked` says which
    /// conflicts are still marked; the others are forgotten, so a conflict marked again after
    /// being lifted is reported again.
    pub fn first(&mut self, conflict: Conflict, marked: impl Fn(&Conflict) -> bool) -> bool {
        self.0.retain(|c| marked(c));
        self.0.insert(conflict)
    }
}

/// Acts on the DHCP server's events: counts, logs and reports each new conflict.
pub struct Reporter {
    sink: Sink,
    served: Arc<Served>,
    reported: Reported,
}

impl Reporter {
    /// A reporter to `sink` about the pool `served` serves.
    pub fn new(sink: Sink, served: Arc<Served>) -> Self {
        Self {
            sink,
            served,
            reported: Reported::default(),
        }
    }

    /// Handles one server event (anything but a DECLINE is passed over). Never waits: the
    /// Event is posted by a task of its own.
    pub fn on_event(&mut self, event: &Event) {
        let Some(conflict) = declined(event) else {
            return;
        };
        let leases = self.served.leases();
        let marked = |c: &Conflict| leases.is_conflicted(mac_of(c), c.ip);
        metrics::conflicts(leases.conflicts().len());
        if !self.reported.first(conflict, marked) {
            tracing::debug!(ip = %conflict.ip, mac = %conflict.mac, "conflict declined again; reported already");
            return;
        }
        metrics::conflict();
        tracing::warn!(
            ip = %conflict.ip,
            mac = %conflict.mac,
            "address in conflict (the client declined it): no longer offered to this client"
        );
        if let Sink::Kube {
            client,
            namespace,
            name,
            instance,
        } = &self.sink
        {
            let uid = self.served.pool_uid();
            let report = vmdhcp_api::conflict::agent_event(
                &PoolRef {
                    namespace,
                    name,
                    uid: uid.as_deref(),
                },
                &conflict,
                &detail(event),
                instance,
                event.time().unwrap_or_else(SystemTime::now),
            );
            let api: Api<KubeEvent> = Api::namespaced(client.clone(), namespace);
            tokio::spawn(post(api, report, conflict));
        }
    }
}

fn mac_of(conflict: &Conflict) -> MacAddr {
    MacAddr::new(conflict.mac.octets())
}

/// Tries this often to post a report, waiting twice as long after each failure from
/// [`FIRST_RETRY`].
const POST_ATTEMPTS: u32 = 6;
/// The first wait before posting again.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Posts `report`, retrying while the API server is unreachable (the mark stands meanwhile).
async fn post(api: Api<KubeEvent>, report: KubeEvent, conflict: Conflict) {
    let mut delay = FIRST_RETRY;
    for attempt in 1..=POST_ATTEMPTS {
        match api.create(&PostParams::default(), &report).await {
            Ok(_) => {
                tracing::info!(ip = %conflict.ip, mac = %conflict.mac, "conflict reported");
                return;
            }
            // Posted by an attempt whose answer was lost.
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            // Not allowed (RBAC) or refused as invalid: trying again changes nothing.
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422 => {
                metrics::report_error();
                tracing::error!(ip = %conflict.ip, mac = %conflict.mac, "conflict not reported: {}", s.message);
                return;
            }
            Err(e) if attempt < POST_ATTEMPTS => {
                tracing::debug!(attempt, "conflict not reported yet: {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                metrics::report_error();
                tracing::error!(ip = %conflict.ip, mac = %conflict.mac, "conflict not reported after {POST_ATTEMPTS} attempts: {e}");
            }
        }
    }
}

/// Lifts the marks `leases` holds that `table` no longer backs; returns them.
pub fn lift_resolved(leases: &StaticLeases, table: &Table) -> Vec<(MacAddr, Ipv4Addr)> {
    let marked = leases.conflicts();
    if marked.is_empty() {
        return marked;
    }
    let lifted = resolved(&marked, table);
    for (mac, ip) in &lifted {
        leases.clear_conflict(*mac, *ip);
    }
    metrics::conflicts(marked.len() - lifted.len());
    lifted
}

#[cfg(test)]
mod tests {
    use dhcp_server::{HwAddr, IgnoreReason};

    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr::new([2, 0, 0, 0, 0, n])
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    fn conflict(n: u8, addr: &str) -> Conflict {
        Conflict {
            ip: ip(addr),
            mac: vmdhcp_api::MacAddr::from(mac(n).octets()),
        }
    }

    #[test]
    fn only_a_decline_the_lease_table_accepted_is_a_conflict() {
        let hw = HwAddr::new(1, &mac(1).octets());
        let event = Event::new(EventKind::Declined, 0x2a, hw, ip("10.0.0.5"))
            .with_client_id(&[1, 2, 0, 0, 0, 0, 1]);
        assert_eq!(declined(&event), Some(conflict(1, "10.0.0.5")));
        assert_eq!(
            detail(&event),
            "client id 01:02:00:00:00:00:01, xid 0x0000002a"
        );
        let no_id = Event::new(EventKind::Declined, 7, hw, ip("10.0.0.5"));
        assert_eq!(detail(&no_id), "xid 0x00000007");
        // A DECLINE of another address is ignored by the engine, not a conflict.
        let ignored = Event::new(
            EventKind::Ignored(IgnoreReason::NotClientAddress(ip("10.0.0.6"))),
            7,
            hw,
            ip("10.0.0.6"),
        );
        assert_eq!(declined(&ignored), None);
        assert_eq!(
            declined(&Event::new(EventKind::Offered, 7, hw, ip("10.0.0.5"))),
            None
        );
        // Not Ethernet: no MAC to report.
        let token_ring = Event::new(
            EventKind::Declined,
            7,
            HwAddr::new(6, &[1; 6]),
            ip("10.0.0.5"),
        );
        assert_eq!(declined(&token_ring), None);
    }

    #[test]
    fn a_mark_stands_while_the_pool_maps_the_address_to_the_mac() {
        let table = |entries: &[(u8, &str)]| {
            let leases = StaticLeases::new();
            for (n, addr) in entries {
                leases.insert(mac(*n), dhcp_server::Lease::new(ip(addr)));
            }
            Table::served_by(&leases)
        };
        let marked = [(mac(1), ip("10.0.0.5")), (mac(2), ip("10.0.0.6"))];
        let cases = [
            (
                "unchanged",
                table(&[(1, "10.0.0.5"), (2, "10.0.0.6")]),
                vec![],
            ),
            (
                "MAC 1 moved (the controller handled it)",
                table(&[(1, "10.0.0.9"), (2, "10.0.0.6")]),
                vec![marked[0]],
            ),
            (
                "MAC 2's allocation gone (the address is the CONFLICT mark now)",
                table(&[(1, "10.0.0.5")]),
                vec![marked[1]],
            ),
            ("pool emptied", table(&[]), marked.to_vec()),
        ];
        for (what, table, want) in cases {
            assert_eq!(resolved(&marked, &table), want, "{what}");
        }
    }

    #[test]
    fn lifting_clears_exactly_the_resolved_marks() {
        let leases = StaticLeases::new();
        leases.insert(mac(1), dhcp_server::Lease::new(ip("10.0.0.5")));
        leases.insert(mac(2), dhcp_server::Lease::new(ip("10.0.0.6")));
        leases.mark_conflict(mac(1), ip("10.0.0.5"));
        leases.mark_conflict(mac(2), ip("10.0.0.6"));
        leases.remove(mac(2));
        let lifted = lift_resolved(&leases, &Table::served_by(&leases));
        assert_eq!(lifted, [(mac(2), ip("10.0.0.6"))]);
        assert_eq!(leases.conflicts(), [(mac(1), ip("10.0.0.5"))]);
    }

    #[test]
    fn a_conflict_is_reported_once_while_marked_and_again_once_marked_anew() {
        let mut reported = Reported::default();
        let marked_now = std::sync::Mutex::new(HashSet::new());
        let is_marked = |c: &Conflict| marked_now.lock().expect("lock").contains(c);
        marked_now
            .lock()
            .expect("lock")
            .insert(conflict(1, "10.0.0.5"));
        assert!(reported.first(conflict(1, "10.0.0.5"), is_marked));
        assert!(
            !reported.first(conflict(1, "10.0.0.5"), is_marked),
            "declined again"
        );
        marked_now
            .lock()
            .expect("lock")
            .insert(conflict(2, "10.0.0.6"));
        assert!(
            reported.first(conflict(2, "10.0.0.6"), is_marked),
            "another conflict"
        );
        // The mark of MAC 1 was lifted (its NIC moved), then the address came back to it and
        // was declined again: a new conflict.
        marked_now
            .lock()
            .expect("lock")
            .remove(&conflict(1, "10.0.0.5"));
        assert!(!reported.first(conflict(2, "10.0.0.6"), is_marked));
        marked_now
            .lock()
            .expect("lock")
            .insert(conflict(1, "10.0.0.5"));
        assert!(reported.first(conflict(1, "10.0.0.5"), is_marked));
    }
}
