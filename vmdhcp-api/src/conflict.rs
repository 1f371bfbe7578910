//! Address conflicts, between the agent and the controller (vmdhcp's; upstream ignored
//! DHCPDECLINE). Pure: the Event an agent posts and how the controller reads it back.
//!
//! A DHCP client that finds its address in use by another host declines it (RFC 2131
//! §4.4.1), and the server must not hand it out again. The agent only serves what the
//! IPPool's status says, so it stops offering the address at once and tells the controller
//! through a Warning Event (`events.k8s.io/v1`) on the IPPool:
//!
//! - reason [`AddressConflict`](REASON_ADDRESS_CONFLICT), action
//!   [`Decline`](ACTION_DECLINE), a note naming the address and the MAC;
//! - annotations [`conflict-ip`](ANNOTATION_CONFLICT_IP) and
//!   [`conflict-mac`](ANNOTATION_CONFLICT_MAC), so nothing has to parse the note.
//!
//! The controller replaces the allocation by the [`CONFLICT`](crate::consts::MARK_CONFLICT)
//! mark (the address stays used, by nobody), moves the NIC to another address, and annotates
//! the Event [`conflict-handled`](ANNOTATION_CONFLICT_HANDLED) so that it acts once even when
//! it restarts and lists the Events again ([`read`] tells it what an Event asks for).
//!
//! ```
//! use vmdhcp_api::conflict::{self, Conflict, PoolRef, Reading};
//!
//! let pool = PoolRef { namespace: "default", name: "net-48", uid: Some("0b7c") };
//! let conflict = Conflict { ip: "192.168.48.84".parse()?, mac: "ca:70:82:e6:84:6e".parse()? };
//! let event = conflict::agent_event(&pool, &conflict, "xid 0x2a", "default-net-48-agent", std::time::SystemTime::UNIX_EPOCH);
//! assert_eq!(event.note.as_deref(), Some(
//!     "address 192.168.48.84 declined by mac ca:70:82:e6:84:6e (xid 0x2a): another host uses it; \
//!      the agent no longer offers it"));
//! match conflict::read(&event) {
//!     Reading::Report { pool, conflict: read } => {
//!         assert_eq!(pool.to_string(), "default/net-48");
//!         assert_eq!(read, conflict);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::SystemTime;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use crate::MacAddr;
pub use crate::consts::{
    ACTION_DECLINE, AGENT_REPORTING_CONTROLLER, ANNOTATION_CONFLICT_HANDLED,
    ANNOTATION_CONFLICT_IP, ANNOTATION_CONFLICT_MAC, REASON_ADDRESS_CONFLICT,
};
use crate::consts::{API_VERSION, GROUP, KIND_IPPOOL};
use crate::network::NamespacedName;

/// An address a client declined, and the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Conflict {
    /// The declined address.
    pub ip: Ipv4Addr,
    /// The MAC that held it and declined it.
    pub mac: MacAddr,
}

/// The IPPool an agent serves, as its Events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolRef<'a> {
    /// Its namespace (the Event goes there).
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its UID, when known.
    pub uid: Option<&'a str>,
}

/// The longest note an `events.k8s.io/v1` Event may carry.
pub const NOTE_LIMIT: usize = 1024;

/// The Warning Event an agent posts about `conflict` on `pool`: reported by
/// [`AGENT_REPORTING_CONTROLLER`] as `instance` (the agent Pod's name), the client having
/// declined `at`. `detail` is said in parentheses after the MAC (client identifier, xid);
/// empty for none.
pub fn agent_event(
    pool: &PoolRef<'_>,
    conflict: &Conflict,
    detail: &str,
    instance: &str,
    at: SystemTime,
) -> Event {
    let now = Timestamp::try_from(at).unwrap_or_else(|_| Timestamp::now());
    let Conflict { ip, mac } = conflict;
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    let mut note = format!(
        "address {ip} declined by mac {mac}{detail}: another host uses it; the agent no longer \
         offers it"
    );
    truncate(&mut note, NOTE_LIMIT);
    let annotations = BTreeMap::from([
        (ANNOTATION_CONFLICT_IP.to_owned(), ip.to_string()),
        (ANNOTATION_CONFLICT_MAC.to_owned(), mac.to_string()),
    ]);
    Event {
        metadata: ObjectMeta {
            // Unique per report: the time alone is not (the server stamps a whole receive
            // batch with one time), so the address and the MAC are part of it. Names are at
            // most 253 bytes.
            name: Some(format!(
                "{}.{:x}.{:08x}{}",
                pool.name.get(..200).unwrap_or(pool.name),
                now.as_nanosecond(),
                u32::from(*ip),
                mac.to_string().replace(':', "")
            )),
            namespace: Some(pool.namespace.to_owned()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some("Warning".to_owned()),
        reason: Some(REASON_ADDRESS_CONFLICT.to_owned()),
        action: Some(ACTION_DECLINE.to_owned()),
        note: Some(note),
        regarding: Some(ObjectReference {
            api_version: Some(API_VERSION.to_owned()),
            kind: Some(KIND_IPPOOL.to_owned()),
            namespace: Some(pool.namespace.to_owned()),
            name: Some(pool.name.to_owned()),
            uid: pool.uid.map(str::to_owned),
            ..ObjectReference::default()
        }),
        reporting_controller: Some(AGENT_REPORTING_CONTROLLER.to_owned()),
        // The API server refuses more than 128 bytes.
        reporting_instance: Some(instance.get(..128).unwrap_or(instance).to_owned()),
        ..Event::default()
    }
}

/// What an Event asks the controller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// An agent reports `conflict` on the IPPool `pool`; not handled yet.
    Report {
        /// The IPPool.
        pool: NamespacedName,
        /// The address and the MAC.
        conflict: Conflict,
    },
    /// Already handled ([`ANNOTATION_CONFLICT_HANDLED`]).
    Handled,
    /// Not an agent's conflict report on an IPPool (the controller's own Events on vmnetcfgs
    /// share the reason).
    NotOurs,
    /// Regarding an IPPool with reason [`REASON_ADDRESS_CONFLICT`] but without readable
    /// annotations (hand-made, or a future format): left alone, the reason says why.
    Unreadable(String),
}

/// Reads an Event: whether it is an agent's conflict report still to handle.
///
/// ```
/// use vmdhcp_api::conflict::{read, Reading};
/// let event = k8s_openapi::api::events::v1::Event::default();
/// assert_eq!(read(&event), Reading::NotOurs);
/// ```
pub fn read(event: &Event) -> Reading {
    let regarding = event.regarding.as_ref();
    let about_pool = regarding.is_some_and(|r| {
        r.kind.as_deref() == Some(KIND_IPPOOL)
            && r.api_version
                .as_deref()
                .is_some_and(|v| v.split('/').next() == Some(GROUP))
    });
    if event.reason.as_deref() != Some(REASON_ADDRESS_CONFLICT)
        || !about_pool
        || event.reporting_controller.as_deref() != Some(AGENT_REPORTING_CONTROLLER)
    {
        return Reading::NotOurs;
    }
    let annotations = event.metadata.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    if annotation(ANNOTATION_CONFLICT_HANDLED).is_some() {
        return Reading::Handled;
    }
    let (Some(ip), Some(mac)) = (
        annotation(ANNOTATION_CONFLICT_IP),
        annotation(ANNOTATION_CONFLICT_MAC),
    ) else {
        return Reading::Unreadable(format!(
            "no {ANNOTATION_CONFLICT_IP} and {ANNOTATION_CONFLICT_MAC} annotations"
        ));
    };
    let Ok(ip) = ip.parse::<Ipv4Addr>() else {
        return Reading::Unreadable(format!(
            "{ANNOTATION_CONFLICT_IP} {ip:?} is not an IPv4 address"
        ));
    };
    let mac = match mac.parse::<MacAddr>() {
        Ok(mac) => mac,
        Err(e) => return Reading::Unreadable(format!("{ANNOTATION_CONFLICT_MAC} {mac:?}: {e}")),
    };
    // An agent reports in the pool's own namespace; an Event elsewhere about a pool is not
    // one of its reports (whoever may post Events in one namespace must not reach pools of
    // another).
    let namespace = event.metadata.namespace.clone().unwrap_or_default();
    if let Some(theirs) = regarding.and_then(|r| r.namespace.as_deref())
        && theirs != namespace
    {
        return Reading::Unreadable(format!(
            "an Event in namespace {namespace:?} about an IPPool in namespace {theirs:?}"
        ));
    }
    let Some(name) = regarding.and_then(|r| r.name.clone()) else {
        return Reading::Unreadable("regarding an IPPool without a name".into());
    };
    Reading::Report {
        pool: NamespacedName::new(namespace, name),
        conflict: Conflict { ip, mac },
    }
}

/// Cuts `s` to at most `limit` bytes, on a character boundary.
fn truncate(s: &mut String, limit: usize) {
    if s.len() > limit {
        let mut end = limit;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict() -> Conflict {
        Conflict {
            ip: "10.0.0.5".parse().unwrap(),
            mac: "02:00:00:00:00:01".parse().unwrap(),
        }
    }

    fn event() -> Event {
        agent_event(
            &PoolRef {
                namespace: "vms",
                name: "net",
                uid: None,
            },
            &conflict(),
            "",
            "vms-net-agent",
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn the_agents_event_carries_what_the_api_server_requires() {
        let e = event();
        assert_eq!(e.metadata.namespace.as_deref(), Some("vms"));
        // Time, address and MAC: two reports of one receive batch get two names.
        assert_eq!(
            e.metadata.name.as_deref(),
            Some("net.0.0a000005020000000001")
        );
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(
            (e.reason.as_deref(), e.action.as_deref()),
            (Some("AddressConflict"), Some("Decline"))
        );
        assert_eq!(
            e.note.as_deref(),
            Some(
                "address 10.0.0.5 declined by mac 02:00:00:00:00:01: another host uses it; \
                 the agent no longer offers it"
            )
        );
        let r = e.regarding.as_ref().unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.namespace.as_deref(), r.name.as_deref()),
            (Some("IPPool"), Some("vms"), Some("net"))
        );
        assert!(e.event_time.is_some());
        assert_eq!(e.reporting_controller.as_deref(), Some("vm-dhcp-agent"));
        assert_eq!(e.reporting_instance.as_deref(), Some("vms-net-agent"));
    }

    type Edit = fn(&mut Event);

    fn set(e: &mut Event, k: &str, v: &str) {
        e.metadata
            .annotations
            .get_or_insert_default()
            .insert(k.to_owned(), v.to_owned());
    }

    #[test]
    fn reading_tells_reports_from_everything_else() {
        let report = Reading::Report {
            pool: NamespacedName::new("vms", "net"),
            conflict: conflict(),
        };
        let cases: Vec<(&str, Edit, Reading)> = vec![
            ("as posted", |_| {}, report.clone()),
            (
                "MAC in another spelling",
                |e| set(e, ANNOTATION_CONFLICT_MAC, "02-00-00-00-00-01"),
                report.clone(),
            ),
            (
                "regarding without namespace: the Event's",
                |e| e.regarding.as_mut().unwrap().namespace = None,
                report,
            ),
            (
                "handled",
                |e| set(e, ANNOTATION_CONFLICT_HANDLED, "moved"),
                Reading::Handled,
            ),
            (
                "another reason",
                |e| e.reason = Some("Allocated".into()),
                Reading::NotOurs,
            ),
            (
                "about a vmnetcfg",
                |e| e.regarding.as_mut().unwrap().kind = Some("VirtualMachineNetworkConfig".into()),
                Reading::NotOurs,
            ),
            (
                "reported by someone else",
                |e| e.reporting_controller = Some("kubectl".into()),
                Reading::NotOurs,
            ),
            (
                "posted in another namespace than the pool's",
                |e| e.metadata.namespace = Some("attacker".into()),
                Reading::Unreadable(
                    "an Event in namespace \"attacker\" about an IPPool in namespace \"vms\""
                        .into(),
                ),
            ),
            (
                "an IPPool of another group",
                |e| e.regarding.as_mut().unwrap().api_version = Some("example.com/v1".into()),
                Reading::NotOurs,
            ),
            (
                "no annotations",
                |e| e.metadata.annotations = None,
                Reading::Unreadable(
                    "no network.harvesterhci.io/conflict-ip and network.harvesterhci.io/conflict-mac annotations".into(),
                ),
            ),
            (
                "bad ip",
                |e| set(e, ANNOTATION_CONFLICT_IP, "10.0.0"),
                Reading::Unreadable(
                    "network.harvesterhci.io/conflict-ip \"10.0.0\" is not an IPv4 address".into(),
                ),
            ),
        ];
        for (what, edit, want) in cases {
            let mut e = event();
            edit(&mut e);
            assert_eq!(read(&e), want, "{what}");
        }
        let mut bad_mac = event();
        set(&mut bad_mac, ANNOTATION_CONFLICT_MAC, "nope");
        assert!(
            matches!(read(&bad_mac), Reading::Unreadable(why) if why.starts_with("network.harvesterhci.io/conflict-mac \"nope\"")),
        );
    }

    #[test]
    fn long_names_and_details_stay_within_the_api_servers_limits() {
        let name = "n".repeat(253);
        let instance = "i".repeat(300);
        let e = agent_event(
            &PoolRef {
                namespace: "vms",
                name: &name,
                uid: Some("u"),
            },
            &conflict(),
            &"é".repeat(600),
            &instance,
            SystemTime::UNIX_EPOCH,
        );
        assert!(e.metadata.name.as_ref().unwrap().len() <= 253);
        assert!(e.note.as_ref().unwrap().len() <= NOTE_LIMIT);
        assert_eq!(e.reporting_instance.as_ref().unwrap().len(), 128);
        assert_eq!(
            e.regarding.unwrap().name.as_deref(),
            Some(name.as_str()),
            "the reference keeps the whole name"
        );
    }
}
