//! The agent's own series, beside `dhcp-server`'s counters (`dhcp_server_*`: requests by
//! message type, replies, outcomes, and unknown MACs as `dhcp_server_ignored_total{reason=
//! "unknown_client"}`).

use metrics::{counter, describe_counter, describe_gauge, gauge};

/// Leases in the table being served.
pub const LEASES: &str = "vmdhcp_agent_leases";
/// 1 once the first complete IPPool sync (or file load) has been applied.
pub const READY: &str = "vmdhcp_agent_ready";
/// IPPool versions applied or refused, by `result` (`applied`, `refused`).
pub const SYNCS_TOTAL: &str = "vmdhcp_agent_syncs_total";
/// Watch or file-read failures; the table keeps serving through them.
pub const SOURCE_ERRORS_TOTAL: &str = "vmdhcp_agent_source_errors_total";
/// Complete lists of the IPPool: the first sync and every relist after it.
pub const LISTS_TOTAL: &str = "vmdhcp_agent_lists_total";
/// Watches the API server ended with `410 Gone` (its resourceVersion is too old, e.g. after an
/// API server restart or an etcd compaction); each one is followed by a relist.
pub const WATCH_EXPIRED_TOTAL: &str = "vmdhcp_agent_watch_expired_total";
/// NTP host names that failed to resolve.
pub const NTP_RESOLVE_ERRORS_TOTAL: &str = "vmdhcp_agent_ntp_resolve_errors_total";
/// Address conflicts: a client declined its address (once per conflict while it is marked).
pub const CONFLICTS_TOTAL: &str = "vmdhcp_agent_conflicts_total";
/// Addresses held back now because their client declined them (until the pool moves it).
pub const CONFLICTS: &str = "vmdhcp_agent_conflicts";
/// Conflict reports (Kubernetes Events) that could not be posted.
pub const CONFLICT_REPORT_ERRORS_TOTAL: &str = "vmdhcp_agent_conflict_report_errors_total";

/// Registers the help texts (call once, after installing the recorder).
pub fn describe() {
    describe_gauge!(LEASES, "Leases in the table being served");
    describe_gauge!(READY, "1 once the first complete sync has been applied");
    describe_counter!(SYNCS_TOTAL, "IPPool versions applied or refused, by result");
    describe_counter!(
        SOURCE_ERRORS_TOTAL,
        "Watch or file-read failures (the last table keeps serving)"
    );
    describe_counter!(
        LISTS_TOTAL,
        "Complete lists of the IPPool (the first sync and every relist)"
    );
    describe_counter!(
        WATCH_EXPIRED_TOTAL,
        "IPPool watches the API server ended with 410 Gone (each is followed by a relist)"
    );
    describe_counter!(
        NTP_RESOLVE_ERRORS_TOTAL,
        "NTP host names that failed to resolve"
    );
    describe_counter!(
        CONFLICTS_TOTAL,
        "Address conflicts: a client declined its address as in use by another host"
    );
    describe_gauge!(
        CONFLICTS,
        "Addresses held back because their client declined them, until the pool moves it"
    );
    describe_counter!(
        CONFLICT_REPORT_ERRORS_TOTAL,
        "Conflict reports (Kubernetes Events) that could not be posted"
    );
}

pub(crate) fn leases(n: usize) {
    #[allow(clippy::cast_precision_loss)] // a lease table never nears 2^52 entries
    gauge!(LEASES).set(n as f64);
}

pub(crate) fn ready(yes: bool) {
    gauge!(READY).set(if yes { 1.0 } else { 0.0 });
}

pub(crate) fn sync(applied: bool) {
    counter!(SYNCS_TOTAL, "result" => if applied { "applied" } else { "refused" }).increment(1);
}

pub(crate) fn source_error() {
    counter!(SOURCE_ERRORS_TOTAL).increment(1);
}

pub(crate) fn listed() {
    counter!(LISTS_TOTAL).increment(1);
}

pub(crate) fn watch_expired() {
    counter!(WATCH_EXPIRED_TOTAL).increment(1);
}

pub(crate) fn ntp_error() {
    counter!(NTP_RESOLVE_ERRORS_TOTAL).increment(1);
}

pub(crate) fn conflict() {
    counter!(CONFLICTS_TOTAL).increment(1);
}

pub(crate) fn conflicts(n: usize) {
    #[allow(clippy::cast_precision_loss)] // a handful, never near 2^52
    gauge!(CONFLICTS).set(n as f64);
}

pub(crate) fn report_error() {
    counter!(CONFLICT_REPORT_ERRORS_TOTAL).increment(1);
}
