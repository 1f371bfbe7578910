//! [`Metrics`]: the counter handles the server bumps on the packet path.

use metrics::{Counter, counter, describe_counter};

use super::{
    EVENTS_DROPPED_TOTAL, EVENTS_TOTAL, IGNORED_TOTAL, LABEL_EVENT, LABEL_MESSAGE_TYPE,
    LABEL_REASON, OPTIONS_SKIPPED_TOTAL, RECEIVE_ERRORS_TOTAL, RECEIVED_TOTAL, SEND_ERRORS_TOTAL,
    SENT_TOTAL,
};
use crate::event::{Event, EventKind, IgnoreReason};
use crate::request::{MessageType, Skip, Skips};

const RECEIVED_LABELS: [&str; 10] = [
    "discover", "offer", "request", "decline", "ack", "nak", "release", "inform", "other", "none",
];
const SENT_LABELS: [&str; 3] = ["offer", "ack", "nak"];

/// The server's counters, registered once so the packet path only bumps atomics (no key
/// lookup per packet). Handles bind to the recorder installed when [`Metrics::new`] runs;
/// [`Server::new`](crate::Server::new) registers its own with the recorder in force when it
/// runs, and [`Server::with_metrics`](crate::Server::with_metrics) replaces them. The names are
/// in [`metrics`](crate::metrics).
///
/// ```
/// use dhcp_server::{Config, ConfigHandle, Metrics, Server, StaticLeases};
/// use metrics_util::debugging::DebuggingRecorder;
///
/// // Counters registered against a test recorder rather than the global one.
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let counters = metrics::with_local_recorder(&recorder, Metrics::new);
/// let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
/// let server = Server::new(ConfigHandle::new(config), StaticLeases::new()).with_metrics(counters);
///
/// let series = snapshotter.snapshot().into_vec();
/// assert!(series.iter().any(|(key, ..)| key.key().name() == dhcp_server::metrics::SENT_TOTAL));
/// # drop(server);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    received: [Counter; 10],
    sent: [Counter; 3],
    events: [Counter; 7],
    ignored: [Counter; IgnoreReason::LABELS.len()],
    skipped: [Counter; Skip::LABELS.len()],
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
    /// use metrics_util::debugging::DebuggingRecorder;
    ///
    /// let recorder = DebuggingRecorder::new();
    /// let snapshotter = recorder.snapshotter();
    /// let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
    /// // Every series at zero: 10 message types received, 3 sent, 7 events, 14 reasons to
    /// // ignore, 4 reasons to skip an option, and 3 unlabelled error counters.
    /// let series = snapshotter.snapshot().into_vec();
    /// assert_eq!(series.len(), 10 + 3 + 7 + 14 + 4 + 3);
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
            OPTIONS_SKIPPED_TOTAL,
            "malformed options skipped in DHCP requests, by reason"
        );
        describe_counter!(
            RECEIVE_ERRORS_TOTAL,
            "failed receive calls on the DHCP socket"
        );
        Self {
            received: RECEIVED_LABELS.map(|l| counter!(RECEIVED_TOTAL, LABEL_MESSAGE_TYPE => l)),
            sent: SENT_LABELS.map(|l| counter!(SENT_TOTAL, LABEL_MESSAGE_TYPE => l)),
            events: EventKind::LABELS.map(|l| counter!(EVENTS_TOTAL, LABEL_EVENT => l)),
            ignored: IgnoreReason::LABELS.map(|l| counter!(IGNORED_TOTAL, LABEL_REASON => l)),
            skipped: Skip::LABELS.map(|l| counter!(OPTIONS_SKIPPED_TOTAL, LABEL_REASON => l)),
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

    pub(crate) fn skipped(&self, skips: Skips) {
        for (skip, n) in skips.iter() {
            self.skipped[skip.index()].increment(u64::from(n));
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
