//! Counters through the `metrics` facade. The library installs no recorder: the embedding
//! binary does (e.g. a Prometheus exporter), before building the server.

use metrics::{Counter, counter, describe_counter};

use crate::event::{Event, EventKind, IgnoreReason};
use crate::request::MessageType;

/// Datagrams received, by `message_type` (`discover` ... `inform`, `other`, `none` for
/// datagrams without a readable option 53).
///
/// ```
/// assert_eq!(dhcp_server::metrics::RECEIVED_TOTAL, "dhcp_server_received_total");
/// ```
pub const RECEIVED_TOTAL: &str = "dhcp_server_received_total";
/// Replies sent, by `message_type` (`offer`, `ack`, `nak`).
///
/// ```
/// assert_eq!(dhcp_server::metrics::SENT_TOTAL, "dhcp_server_sent_total");
/// ```
pub const SENT_TOTAL: &str = "dhcp_server_sent_total";
/// Handled requests, by `event` (see [`EventKind::LABELS`]).
///
/// ```
/// assert_eq!(dhcp_server::metrics::EVENTS_TOTAL, "dhcp_server_events_total");
/// ```
pub const EVENTS_TOTAL: &str = "dhcp_server_events_total";
/// Requests left unanswered, by `reason` (see [`IgnoreReason::LABELS`]).
///
/// ```
/// assert_eq!(dhcp_server::metrics::IGNORED_TOTAL, "dhcp_server_ignored_total");
/// ```
pub const IGNORED_TOTAL: &str = "dhcp_server_ignored_total";
/// Events dropped because the event channel was full or closed.
///
/// ```
/// assert_eq!(dhcp_server::metrics::EVENTS_DROPPED_TOTAL, "dhcp_server_events_dropped_total");
/// ```
pub const EVENTS_DROPPED_TOTAL: &str = "dhcp_server_events_dropped_total";
/// Replies that could not be sent (socket errors).
///
/// ```
/// assert_eq!(dhcp_server::metrics::SEND_ERRORS_TOTAL, "dhcp_server_send_errors_total");
/// ```
pub const SEND_ERRORS_TOTAL: &str = "dhcp_server_send_errors_total";
/// Receive calls that failed.
///
/// ```
/// assert_eq!(dhcp_server::metrics::RECEIVE_ERRORS_TOTAL, "dhcp_server_receive_errors_total");
/// ```
pub const RECEIVE_ERRORS_TOTAL: &str = "dhcp_server_receive_errors_total";

/// Label of [`RECEIVED_TOTAL`] and [`SENT_TOTAL`].
///
/// ```
/// assert_eq!(dhcp_server::metrics::LABEL_MESSAGE_TYPE, "message_type");
/// ```
pub const LABEL_MESSAGE_TYPE: &str = "message_type";
/// Label of [`EVENTS_TOTAL`].
///
/// ```
/// assert_eq!(dhcp_server::metrics::LABEL_EVENT, "event");
/// ```
pub const LABEL_EVENT: &str = "event";
/// Label of [`IGNORED_TOTAL`].
///
/// ```
/// assert_eq!(dhcp_server::metrics::LABEL_REASON, "reason");
/// ```
pub const LABEL_REASON: &str = "reason";

const RECEIVED_LABELS: [&str; 10] = [
    "discover", "offer", "request", "decline", "ack", "nak", "release", "inform", "other", "none",
];
const SENT_LABELS: [&str; 3] = ["offer", "ack", "nak"];

/// The server's counters, registered once so the packet path only bumps atomics (no key
/// lookup per packet). Handles bind to the recorder installed when [`Metrics::new`] runs.
///
/// ```
/// use metrics_util::debugging::DebuggingRecorder;
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let metrics = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// // ... give `metrics` to `Server::with_metrics` ...
/// let names: Vec<String> = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .map(|(key, ..)| key.key().name().to_owned())
///     .collect();
/// assert!(names.iter().any(|n| n == dhcp_server::metrics::RECEIVED_TOTAL));
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    received: [Counter; 10],
    sent: [Counter; 3],
    events: [Counter; 7],
    ignored: [Counter; 12],
    events_dropped: Counter,
    send_errors: Counter,
    receive_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every counter with the current recorder (all series exist from the start,
    /// at zero).
    ///
    /// ```
    /// let metrics = dhcp_server::Metrics::new(); // no recorder installed: no-op counters
    /// ```
    pub fn new() -> Self {
        describe_counter!(RECEIVED_TOTAL, "DHCP datagrams received, by message type");
        describe_counter!(SENT_TOTAL, "DHCP replies sent, by message type");
        describe_counter!(EVENTS_TOTAL, "DHCP requests handled, by outcome");
        describe_counter!(IGNORED_TOTAL, "DHCP requests left unanswered, by reason");
        describe_counter!(
            EVENTS_DROPPED_TOTAL,
            "server events dropped: channel full or closed"
        );
        describe_counter!(SEND_ERRORS_TOTAL, "DHCP replies that could not be sent");
        describe_counter!(
            RECEIVE_ERRORS_TOTAL,
            "failed receive calls on the DHCP socket"
        );
        Self {
            received: RECEIVED_LABELS.map(|l| counter!(RECEIVED_TOTAL, LABEL_MESSAGE_TYPE => l)),
            sent: SENT_LABELS.map(|l| counter!(SENT_TOTAL, LABEL_MESSAGE_TYPE => l)),
            events: EventKind::LABELS.map(|l| counter!(EVENTS_TOTAL, LABEL_EVENT => l)),
            ignored: IgnoreReason::LABELS.map(|l| counter!(IGNORED_TOTAL, LABEL_REASON => l)),
            events_dropped: counter!(EVENTS_DROPPED_TOTAL),
            send_errors: counter!(SEND_ERRORS_TOTAL),
            receive_errors: counter!(RECEIVE_ERRORS_TOTAL),
        }
    }

    pub(crate) fn received(&self, message_type: Option<MessageType>) {
        let i = match message_type {
            None => 9,
            Some(MessageType::Other(_)) => 8,
            Some(t) => usize::from(u8::from(t)) - 1,
        };
        self.received[i].increment(1);
    }

    pub(crate) fn sent(&self, message_type: MessageType) {
        let i = match message_type {
            MessageType::Offer => 0,
            MessageType::Ack => 1,
            _ => 2,
        };
        self.sent[i].increment(1);
    }

    pub(crate) fn event(&self, event: &Event) {
        let kind = event.kind();
        self.events[kind.index()].increment(1);
        if let EventKind::Ignored(reason) = kind {
            self.ignored[reason.index()].increment(1);
        }
    }

    pub(crate) fn event_dropped(&self) {
        self.events_dropped.increment(1);
    }

    pub(crate) fn send_error(&self) {
        self.send_errors.increment(1);
    }

    pub(crate) fn receive_error(&self) {
        self.receive_errors.increment(1);
    }
}
