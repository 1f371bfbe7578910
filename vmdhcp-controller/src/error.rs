//! The controller's error type. Handler failures that upstream reports in conditions keep
//! upstream's text ([`UpstreamError`]); the rest name the object and value at fault.

use vmdhcp_api::message::UpstreamError;

/// Everything a reconcile or the process can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A handler outcome with upstream's wording (goes into a condition message as is).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// An object that does not parse or convert (bad CIDR, bad allocation entry, bad MAC).
    #[error("{object}: {source}")]
    Api {
        /// `kind ns/name` of the object.
        object: String,
        /// What is wrong.
        source: vmdhcp_api::Error,
    },
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, naming the object.
        action: String,
        /// The API error.
        source: kube::Error,
    },
    /// Several NICs failed; each message names its NIC.
    #[error("{}", .0.join("; "))]
    Nics(Vec<String>),
    /// Steps of a reconcile failed (an agent Pod not created, a NAD not labelled); the status
    /// that shows them was written. Each message names its object and quotes the API server.
    #[error("{object}: {}", .failures.join("; "))]
    Steps {
        /// `kind ns/name`.
        object: String,
        /// What failed.
        failures: Vec<String>,
    },
    /// Writing a status kept conflicting with other writers.
    #[error("{object}: status kept changing under us ({attempts} attempts); will retry")]
    Contended {
        /// `kind ns/name`.
        object: String,
        /// How many writes were tried.
        attempts: u32,
    },
    /// The batch of IPPool changes this operation was part of could not be written.
    #[error("{object}: {failure}")]
    PoolWrite {
        /// `ippool ns/name`.
        object: String,
        /// Why.
        failure: PoolWriteFailure,
    },
    /// Kubernetes client configuration.
    #[error("kubernetes configuration: {0}")]
    Config(String),
    /// The HTTP endpoints could not be served.
    #[error("HTTP endpoints on {addr}: {source}")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The caches are still listing; the reconcile is tried again.
    #[error("caches not synced yet")]
    CachesNotSynced,
    /// This replica lost the leader-election lease.
    #[error("lost the leader-election lease {0}")]
    LostLease(String),
}

impl Error {
    /// Wraps a kube error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// A short label per variant that does not change with the message: the `error` label of
    /// `vmdhcp_controller_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Upstream(_) => "upstream",
            Self::Api { .. } => "api",
            Self::Kube { .. } => "kube",
            Self::Nics(_) => "nics",
            Self::Steps { .. } => "steps",
            Self::Contended { .. } => "contended",
            Self::PoolWrite { .. } => "pool_write",
            Self::Config(_) => "config",
            Self::Http { .. } => "http",
            Self::Metrics(_) => "metrics",
            Self::CachesNotSynced => "caches_not_synced",
            Self::LostLease(_) => "lost_lease",
        }
    }

    /// Whether this is an optimistic-concurrency conflict (HTTP 409 on a write).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Kube { source, .. } if is_status(source, 409))
    }

    /// The text a condition shows: upstream's message for handler outcomes; the API server's
    /// own message for API errors (e.g. `pods "x" not found`, as upstream).
    pub fn condition_message(&self) -> String {
        match self {
            Self::Kube {
                source: kube::Error::Api(status),
                ..
            } => status.message.clone(),
            Self::PoolWrite { failure, .. } => failure.to_string(),
            other => other.to_string(),
        }
    }
}

/// Why a pool's batch was not written; every operation of the batch gets the same (the
/// message is what a NIC's condition shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolWriteFailure {
    /// The pool does not exist (any more); the API server's message.
    Gone(String),
    /// The pool's spec or status does not rebuild; the message names the entry.
    Unbuildable(String),
    /// The API server refused, or the status kept conflicting; its message.
    Failed(String),
}

impl std::fmt::Display for PoolWriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gone(m) | Self::Unbuildable(m) | Self::Failed(m) => f.write_str(m),
        }
    }
}

/// Whether `e` is an API error with HTTP status `code`.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::upstream(Error::Upstream(UpstreamError::IpPoolNotReady { namespace: "ns".into(), name: "p".into() }), "upstream")]
    #[case::nics(Error::Nics(vec!["a".into()]), "nics")]
    #[case::steps(Error::Steps { object: "ippool ns/p".into(), failures: vec!["x".into()] }, "steps")]
    #[case::contended(Error::Contended { object: "ippool ns/p".into(), attempts: 3 }, "contended")]
    #[case::pool_write(Error::PoolWrite { object: "ippool ns/p".into(), failure: PoolWriteFailure::Failed("no".into()) }, "pool_write")]
    #[case::config(Error::Config("bad".into()), "config")]
    #[case::caches_not_synced(Error::CachesNotSynced, "caches_not_synced")]
    #[case::lost_lease(Error::LostLease("ns/lease".into()), "lost_lease")]
    fn metric_labels_name_the_variant_not_the_message(#[case] e: Error, #[case] label: &str) {
        assert_eq!(e.metric_label(), label);
    }
}
