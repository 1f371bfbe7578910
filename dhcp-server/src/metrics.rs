//! Metric names: the counters the server reports through the `metrics` facade and their
//! labels. The handles themselves are [`Metrics`](crate::Metrics).
//!
//! The library installs no recorder: the embedding binary does (e.g. a Prometheus
//! exporter), before building the server. Every series exists from the start, at zero, so
//! dashboards and alerts see it before the first datagram.
//!
//! ```
//! use dhcp_server::metrics::{LABEL_MESSAGE_TYPE, RECEIVED_TOTAL};
//! use metrics_util::debugging::DebuggingRecorder;
//!
//! // A test recorder; a binary would install its exporter globally instead.
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
//! // ... `Server::with_metrics(counters)` ...
//!
//! // Find the series by name and label, as a dashboard query would.
//! let discovers = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     let key = key.key();
//!     key.name() == RECEIVED_TOTAL
//!         && key.labels().any(|l| l.key() == LABEL_MESSAGE_TYPE && l.value() == "discover")
//! });
//! assert!(discovers.is_some(), "registered before the first datagram");
//! # drop(counters);
//! ```

pub(crate) mod handles;

/// Datagrams received, by [`LABEL_MESSAGE_TYPE`]: the DHCP message type, or `other` for
/// types this server does not know, `none` for datagrams without a readable option 53.
///
/// ```
/// use dhcp_server::metrics::{LABEL_MESSAGE_TYPE, RECEIVED_TOTAL};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// assert_eq!(
///     label_values(RECEIVED_TOTAL, LABEL_MESSAGE_TYPE),
///     ["ack", "decline", "discover", "inform", "nak", "none", "offer", "other", "release", "request"],
/// );
/// ```
pub const RECEIVED_TOTAL: &str = "dhcp_server_received_total";

/// Replies sent, by [`LABEL_MESSAGE_TYPE`].
///
/// ```
/// use dhcp_server::metrics::{LABEL_MESSAGE_TYPE, SENT_TOTAL};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// assert_eq!(label_values(SENT_TOTAL, LABEL_MESSAGE_TYPE), ["ack", "nak", "offer"]);
/// ```
pub const SENT_TOTAL: &str = "dhcp_server_sent_total";

/// Handled requests, by [`LABEL_EVENT`]: the [`EventKind`](crate::EventKind) of each
/// [`Event`](crate::Event), as [`EventKind::label`](crate::EventKind::label) names it.
///
/// ```
/// use dhcp_server::metrics::{EVENTS_TOTAL, LABEL_EVENT};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// assert_eq!(
///     label_values(EVENTS_TOTAL, LABEL_EVENT),
///     ["acked", "declined", "ignored", "informed", "nacked", "offered", "released"],
/// );
/// ```
pub const EVENTS_TOTAL: &str = "dhcp_server_events_total";

/// Requests left unanswered, by [`LABEL_REASON`]: the [`IgnoreReason`](crate::IgnoreReason),
/// as [`IgnoreReason::label`](crate::IgnoreReason::label) names it.
///
/// ```
/// use dhcp_server::metrics::{IGNORED_TOTAL, LABEL_REASON};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// let reasons = label_values(IGNORED_TOTAL, LABEL_REASON);
/// assert_eq!(reasons.len(), 14);
/// assert!(reasons.iter().any(|r| r == "unknown_client"));
/// assert!(reasons.iter().any(|r| r == "address_conflict"));
/// ```
pub const IGNORED_TOTAL: &str = "dhcp_server_ignored_total";

/// Events dropped because the event channel was full or closed (no labels).
///
/// ```
/// use dhcp_server::metrics::{EVENTS_DROPPED_TOTAL};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// assert_eq!(unlabelled(EVENTS_DROPPED_TOTAL), 1);
/// ```
pub const EVENTS_DROPPED_TOTAL: &str = "dhcp_server_events_dropped_total";

/// Replies the socket refused (no labels); their events say
/// [`SendFailed`](crate::IgnoreReason::SendFailed).
///
/// ```
/// use dhcp_server::metrics::{SEND_ERRORS_TOTAL};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// assert_eq!(unlabelled(SEND_ERRORS_TOTAL), 1);
/// ```
pub const SEND_ERRORS_TOTAL: &str = "dhcp_server_send_errors_total";

/// Receive calls that failed (no labels).
///
/// ```
/// use dhcp_server::metrics::{RECEIVE_ERRORS_TOTAL};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// assert_eq!(unlabelled(RECEIVE_ERRORS_TOTAL), 1);
/// ```
pub const RECEIVE_ERRORS_TOTAL: &str = "dhcp_server_receive_errors_total";

/// Malformed options skipped in requests that were still answered, by [`LABEL_REASON`]: the
/// [`Skip`](crate::Skip), as [`Skip::label`](crate::Skip::label) names it.
///
/// ```
/// use dhcp_server::metrics::{LABEL_REASON, OPTIONS_SKIPPED_TOTAL};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// assert_eq!(
///     label_values(OPTIONS_SKIPPED_TOTAL, LABEL_REASON),
///     ["bad_length", "bad_overload", "no_end", "truncated"],
/// );
/// ```
pub const OPTIONS_SKIPPED_TOTAL: &str = "dhcp_server_options_skipped_total";

/// The label of [`RECEIVED_TOTAL`] and [`SENT_TOTAL`]: the DHCP message type.
///
/// ```
/// use dhcp_server::metrics::{LABEL_MESSAGE_TYPE, SENT_TOTAL};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// // One series per reply type.
/// assert!(label_values(SENT_TOTAL, LABEL_MESSAGE_TYPE).contains(&"offer".to_owned()));
/// ```
pub const LABEL_MESSAGE_TYPE: &str = "message_type";

/// The label of [`EVENTS_TOTAL`]: what the server did.
///
/// ```
/// use dhcp_server::metrics::{EVENTS_TOTAL, LABEL_EVENT};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// assert!(label_values(EVENTS_TOTAL, LABEL_EVENT).contains(&"declined".to_owned()));
/// ```
pub const LABEL_EVENT: &str = "event";

/// The label of [`IGNORED_TOTAL`] and [`OPTIONS_SKIPPED_TOTAL`]: why.
///
/// ```
/// use dhcp_server::metrics::{IGNORED_TOTAL, LABEL_REASON, OPTIONS_SKIPPED_TOTAL};
/// # use metrics_util::debugging::DebuggingRecorder;
/// # let recorder = DebuggingRecorder::new();
/// # let snapshotter = recorder.snapshotter();
/// # let _counters = metrics::with_local_recorder(&recorder, dhcp_server::Metrics::new);
/// # let label_values = |name: &str, label: &str| -> Vec<String> {
/// #     let mut values: Vec<String> = snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .filter_map(|(key, ..)| {
/// #             key.key().labels().find(|l| l.key() == label).map(|l| l.value().to_owned())
/// #         })
/// #         .collect();
/// #     values.sort();
/// #     values
/// # };
/// # let unlabelled = |name: &str| -> usize {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name && key.key().labels().next().is_none())
/// #         .count()
/// # };
/// assert!(label_values(IGNORED_TOTAL, LABEL_REASON).contains(&"pool_exhausted".to_owned()));
/// assert!(label_values(OPTIONS_SKIPPED_TOTAL, LABEL_REASON).contains(&"truncated".to_owned()));
/// ```
pub const LABEL_REASON: &str = "reason";
