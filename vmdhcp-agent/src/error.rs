//! The agent's one error type.

use std::path::PathBuf;

/// What can go wrong in the agent. Every variant names the value or object it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The IPPool's spec cannot be served (bad CIDR or server IP).
    #[error("IPPool {pool}: {source}")]
    Pool {
        /// `<namespace>/<name>` of the pool.
        pool: String,
        /// What vmdhcp-api found wrong.
        #[source]
        source: vmdhcp_api::Error,
    },
    /// The pool's options do not make a valid DHCP configuration.
    #[error("IPPool {pool}: cannot build the DHCP configuration: {source}")]
    Config {
        /// `<namespace>/<name>` of the pool.
        pool: String,
        /// What dhcp-server rejected.
        #[source]
        source: dhcp_server::Error,
    },
    /// `--ippool-ref` is not `<namespace>/<name>`.
    #[error("--ippool-ref {value:?}: expected <namespace>/<name>")]
    PoolRef {
        /// The value given.
        value: String,
    },
    /// The standalone file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The standalone file is not what the agent can serve.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the document and value.
        reason: String,
    },
    /// The DHCP socket could not be opened.
    #[error("cannot open the DHCP socket on {nic}: {source}")]
    Socket {
        /// The interface.
        nic: String,
        /// Why.
        #[source]
        source: dhcp_server::Error,
    },
    /// The DHCP server stopped with an error.
    #[error("DHCP server on {nic} failed: {source}")]
    Serve {
        /// The interface.
        nic: String,
        /// Why.
        #[source]
        source: dhcp_server::Error,
    },
    /// The HTTP listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No Kubernetes client could be built.
    #[error("cannot build a Kubernetes client: {0}")]
    Kube(String),
    /// The Prometheus recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
}
