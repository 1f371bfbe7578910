//! Wrangler-style status conditions (`GenericCondition`) and the rules for setting them.
//!
//! Upstream's conditions are maintained by wrangler, not by Kubernetes' `metav1.Condition`
//! helpers, and the Harvester UI reads them as wrangler writes them:
//!
//! - a condition that does not exist yet is created with status `Unknown` and no timestamp;
//! - `lastUpdateTime` is set to "now" whenever the **status or message** changes (wrangler's
//!   `Cond.Reason` writes the reason without touching it);
//! - `lastTransitionTime` is never written;
//! - timestamps are RFC 3339 in UTC with whole seconds, as Go's `time.RFC3339`.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::consts::{REASON_ERROR, STATUS_FALSE, STATUS_TRUE, STATUS_UNKNOWN};

/// One entry of `status.conditions` (wrangler's `GenericCondition`).
///
/// Empty strings are omitted when serialising, as Go's `omitempty` does, so objects we write
/// look like the ones upstream writes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. [`COND_CACHE_READY`](crate::consts::COND_CACHE_READY).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When status or message last changed (RFC 3339, whole seconds, UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_update_time: String,
    /// Never written by wrangler; kept as read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_transition_time: String,
    /// Machine-readable reason, e.g. [`REASON_ERROR`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable message (an error text when `False`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Condition {
    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == STATUS_TRUE
    }
}

/// The condition of type `type_`, if present.
///
/// ```
/// use vmdhcp_api::condition::{find, set};
///
/// let mut conds = Vec::new();
/// set(&mut conds, "CacheReady", "True", "", "", jiff::Timestamp::UNIX_EPOCH);
/// assert!(find(&conds, "CacheReady").is_some_and(|c| c.is_true()));
/// assert!(find(&conds, "AgentReady").is_none());
/// ```
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` exists and is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(Condition::is_true)
}

/// Sets status, reason and message of the condition `type_` the way wrangler does (see the
/// module docs) and returns whether anything changed, i.e. whether the status must be written.
///
/// ```
/// use jiff::Timestamp;
/// use vmdhcp_api::condition::{find, set};
///
/// let t0: Timestamp = "2024-05-01T10:00:00Z".parse()?;
/// let t1: Timestamp = "2024-05-01T11:30:00.75Z".parse()?;
/// let mut conds = Vec::new();
/// assert!(set(&mut conds, "Registered", "False", "Error", "agent pod x not ready", t0));
/// // Same values later: nothing changes, the timestamp stays.
/// assert!(!set(&mut conds, "Registered", "False", "Error", "agent pod x not ready", t1));
/// assert!(set(&mut conds, "Registered", "True", "", "", t1));
/// let c = find(&conds, "Registered").unwrap();
/// assert_eq!(c.last_update_time, "2024-05-01T11:30:00Z");
/// assert_eq!(c.last_transition_time, "");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let (index, created) = if let Some(i) = conditions.iter().position(|c| c.type_ == type_) {
        (i, false)
    } else {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status: STATUS_UNKNOWN.to_owned(),
            ..Condition::default()
        });
        (conditions.len() - 1, true)
    };
    let cond = &mut conditions[index];
    let mut touched = false;
    if cond.status != status {
        status.clone_into(&mut cond.status);
        touched = true;
    }
    if cond.message != message {
        message.clone_into(&mut cond.message);
        touched = true;
    }
    let reason_changed = cond.reason != reason;
    if reason_changed {
        reason.clone_into(&mut cond.reason);
    }
    if touched {
        cond.last_update_time = format_time(now);
    }
    touched || reason_changed || created
}

/// Records a handler's outcome like wrangler's status handlers: `Ok` sets `True` with empty
/// reason and message; `Err(message)` sets `False`, reason [`REASON_ERROR`] and the message.
/// Returns whether anything changed.
///
/// ```
/// use vmdhcp_api::condition::{find, set_result};
///
/// let mut conds = Vec::new();
/// set_result(&mut conds, "AgentReady", Err("agent pod default-net-48-agent not ready"), jiff::Timestamp::UNIX_EPOCH);
/// let c = find(&conds, "AgentReady").unwrap();
/// assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Error"));
/// ```
pub fn set_result(
    conditions: &mut Vec<Condition>,
    type_: &str,
    result: Result<(), &str>,
    now: Timestamp,
) -> bool {
    match result {
        Ok(()) => set(conditions, type_, STATUS_TRUE, "", "", now),
        Err(message) => set(conditions, type_, STATUS_FALSE, REASON_ERROR, message, now),
    }
}

/// Formats a timestamp as Go's `time.Now().UTC().Format(time.RFC3339)`: UTC, whole seconds
/// (truncated, not rounded), `Z` suffix.
///
/// ```
/// let t: jiff::Timestamp = "2024-02-29T23:59:59.999+01:00".parse()?;
/// assert_eq!(vmdhcp_api::condition::format_time(t), "2024-02-29T22:59:59Z");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn format_time(ts: Timestamp) -> String {
    let t = jiff::tz::Offset::UTC.to_datetime(ts);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamp")
    }

    fn cond(status: &str, reason: &str, message: &str, updated: &str) -> Condition {
        Condition {
            type_: "CacheReady".into(),
            status: status.into(),
            last_update_time: updated.into(),
            last_transition_time: String::new(),
            reason: reason.into(),
            message: message.into(),
        }
    }

    const T0: &str = "2024-01-01T00:00:00Z";
    const T1: &str = "2024-06-01T12:00:00Z";

    #[rstest]
    #[case::new_true(None, ("True", "", ""), true, cond("True", "", "", T1))]
    #[case::new_unknown_is_created_without_timestamp(None, ("Unknown", "", ""), true, cond("Unknown", "", "", ""))]
    #[case::unchanged(Some(cond("True", "", "", T0)), ("True", "", ""), false, cond("True", "", "", T0))]
    #[case::status_change_touches(Some(cond("True", "", "", T0)), ("False", "Error", "boom"), true, cond("False", "Error", "boom", T1))]
    #[case::message_change_touches(Some(cond("False", "Error", "a", T0)), ("False", "Error", "b"), true, cond("False", "Error", "b", T1))]
    #[case::reason_only_does_not_touch(Some(cond("False", "Error", "", T0)), ("False", "NotInitialized", ""), true, cond("False", "NotInitialized", "", T0))]
    #[case::transition_time_kept(
        Some(Condition { last_transition_time: "2020-01-01T00:00:00Z".into(), ..cond("True", "", "", T0) }),
        ("False", "Error", "x"),
        true,
        Condition { last_transition_time: "2020-01-01T00:00:00Z".into(), ..cond("False", "Error", "x", T1) }
    )]
    fn set_follows_wrangler(
        #[case] before: Option<Condition>,
        #[case] to: (&str, &str, &str),
        #[case] changed: bool,
        #[case] after: Condition,
    ) {
        let other = Condition {
            type_: "Registered".into(),
            ..cond("True", "", "", T0)
        };
        let mut conds = vec![other.clone()];
        conds.extend(before);
        assert_eq!(
            set(&mut conds, "CacheReady", to.0, to.1, to.2, ts(T1)),
            changed
        );
        assert_eq!(conds, vec![other, after]);
    }

    #[test]
    fn set_result_mirrors_set_error() {
        let mut conds = Vec::new();
        assert!(set_result(&mut conds, "Allocated", Err("boom"), ts(T0)));
        assert_eq!(
            conds[0],
            Condition {
                type_: "Allocated".into(),
                ..cond("False", "Error", "boom", T0)
            }
        );
        assert!(set_result(&mut conds, "Allocated", Ok(()), ts(T1)));
        assert_eq!(
            conds[0],
            Condition {
                type_: "Allocated".into(),
                ..cond("True", "", "", T1)
            }
        );
        assert!(is_true(&conds, "Allocated"));
        assert!(!is_true(&conds, "Disabled"));
    }

    #[test]
    fn empty_fields_are_omitted_like_go() {
        let c = cond("True", "", "", "");
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"type": "CacheReady", "status": "True"})
        );
    }

    #[test]
    fn format_time_truncates_and_uses_utc() {
        assert_eq!(
            format_time(ts("1999-12-31T23:59:59.999999Z")),
            "1999-12-31T23:59:59Z"
        );
        assert_eq!(
            format_time(ts("2024-01-01T05:00:00-03:00")),
            "2024-01-01T08:00:00Z"
        );
    }
}
