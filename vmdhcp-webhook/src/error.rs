//! [`Error`], the webhook's one error type.
//!
//! Admission denials are not errors: they are answers ([`crate::admission`]). These are the
//! failures of the process itself — talking to the API server, making certificates, serving.

use std::net::SocketAddr;

/// What can go wrong in the webhook. Every variant names the object or value it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("cannot {verb} {object}: {source}")]
    Kube {
        /// What was attempted (`get`, `create`, `update`, `list`, …).
        verb: &'static str,
        /// The object, e.g. `Secret harvester-system/vm-dhcp-webhook-ca`.
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },

    /// Writes kept conflicting with other replicas; the next periodic check tries again.
    #[error("gave up on {object} after {attempts} conflicting writes")]
    TooManyConflicts {
        /// The object.
        object: String,
        /// How many writes were tried.
        attempts: usize,
    },

    /// A certificate or key could not be generated or signed.
    #[error("cannot generate the {what}: {source}")]
    Generate {
        /// Which certificate (`CA certificate`, `serving certificate for …`).
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },

    /// A PEM certificate or key could not be read.
    #[error("cannot read the {what}: {reason}")]
    Pem {
        /// Which certificate or key.
        what: String,
        /// Why.
        reason: String,
    },

    /// rustls refused the configuration or the key.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),

    /// A command-line value is unusable.
    #[error("{flag} {value:?}: {reason}")]
    Flag {
        /// The flag, e.g. `--service-cidr`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No Kubernetes client could be built.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),

    /// The HTTPS port could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A reflector stopped before its store was filled.
    #[error("the {kind} cache stopped before it was synced")]
    CacheStopped {
        /// The kind cached.
        kind: &'static str,
    },
}
