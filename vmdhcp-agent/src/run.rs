//! Wiring: the source (Kubernetes watch or file) feeds [`Served`], the DHCP server answers
//! from it (its DECLINEs go to the [`conflict`] reporter), the NTP resolver refreshes it, the
//! HTTP endpoints report on it. Everything stops on one cancellation token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dhcp_server::{DhcpSocket, Event, EventKind, Server, SocketConfig};
use kube::Client;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::Args;
use crate::error::Error;
use crate::state::{self, Served};
use crate::{conflict, file, http, metrics, ntp, watch};

/// Where the IPPool comes from.
pub enum Source {
    /// Watch `namespace/name` through this client.
    Kube {
        /// The client.
        client: Client,
        /// The pool's namespace.
        namespace: String,
        /// The pool's name.
        name: String,
    },
    /// Read this file (standalone mode).
    File(PathBuf),
}

/// How DHCP is served.
pub enum Dhcp {
    /// Not at all (`--dry-run`).
    Off,
    /// On `0.0.0.0:67` bound to this interface.
    Interface(String),
    /// On a socket the caller opened (tests, examples, other namespaces).
    Socket(DhcpSocket),
}

/// One agent, ready to run.
pub struct Agent {
    /// The IPPool's source.
    pub source: Source,
    /// The DHCP side.
    pub dhcp: Dhcp,
    /// HTTP endpoints address; `None` serves none.
    pub http: Option<SocketAddr>,
    /// Serve `/leases`.
    pub cache_dump: bool,
    /// NTP re-resolution period.
    pub ntp_refresh: Duration,
    /// Prometheus handle for `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// The state it serves; give a clone to whoever wants to look at it.
    pub served: Arc<Served>,
    /// Its name (the Pod's): the reporting instance of its Events.
    pub name: String,
    /// `http`, bound early by [`Agent::listen_http`].
    http_listener: Option<tokio::net::TcpListener>,
}

impl Agent {
    /// An agent with the defaults of the binary: no HTTP, NTP re-resolved every 5 minutes.
    pub fn new(source: Source, dhcp: Dhcp) -> Self {
        Self {
            source,
            dhcp,
            http: None,
            cache_dump: false,
            ntp_refresh: Duration::from_secs(300),
            metrics: None,
            served: Arc::new(Served::new()),
            name: "vmdhcp-agent".to_owned(),
            http_listener: None,
        }
    }

    /// Binds the HTTP endpoints' address (`http`) now rather than in [`Agent::run`], and
    /// returns the bound address: with port 0 the caller learns which port was picked.
    /// `None` when `http` is `None`.
    ///
    /// # Errors
    /// [`Error::Http`] when the address cannot be bound.
    pub async fn listen_http(&mut self) -> Result<Option<SocketAddr>, Error> {
        let Some(addr) = self.http else {
            return Ok(None);
        };
        let listener = match self.http_listener.take() {
            Some(listener) => listener,
            None => http::listen(addr).await?,
        };
        let bound = listener
            .local_addr()
            .map_err(|source| Error::Http { addr, source })?;
        self.http_listener = Some(listener);
        Ok(Some(bound))
    }

    /// Runs until `stop` is cancelled.
    ///
    /// # Errors
    /// In standalone mode, when the file cannot be served at start; in any mode, when the
    /// DHCP socket or the HTTP port cannot be opened, or the DHCP server fails.
    pub async fn run(self, stop: CancellationToken) -> Result<(), Error> {
        let Self {
            source,
            dhcp,
            http: http_addr,
            cache_dump,
            ntp_refresh,
            metrics: prometheus,
            served,
            name,
            http_listener,
        } = self;
        metrics::describe();
        metrics::ready(false);
        let ready = Arc::new(AtomicBool::new(false));
        let options_changed = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();

        if let Some(addr) = http_addr {
            let router = http::router(http::Endpoints {
                served: served.clone(),
                ready: ready.clone(),
                metrics: prometheus,
                cache_dump,
            });
            let listener = match http_listener {
                Some(listener) => listener,
                None => http::listen(addr).await?,
            };
            tasks.spawn(http::serve(listener, router, stop.clone()));
        }
        let sink = match &source {
            Source::Kube {
                client,
                namespace,
                name: pool,
            } => conflict::Sink::Kube {
                client: client.clone(),
                namespace: namespace.clone(),
                name: pool.clone(),
                instance: name,
            },
            Source::File(_) => conflict::Sink::Log,
        };
        start_source(source, &mut tasks, &served, &ready, &options_changed, &stop)?;

        {
            let (served, stop) = (served.clone(), stop.clone());
            tasks.spawn(async move {
                ntp::run(served, ntp_refresh, options_changed, stop).await;
                Ok(())
            });
        }

        let socket = match dhcp {
            Dhcp::Off => {
                tracing::info!("dry run: no DHCP socket");
                None
            }
            Dhcp::Interface(nic) => {
                let config = SocketConfig::new().interface(nic.clone());
                Some(DhcpSocket::bind(&config).map_err(|source| Error::Socket { nic, source })?)
            }
            Dhcp::Socket(socket) => Some(socket),
        };
        if let Some(socket) = socket {
            let (served, stop) = (served.clone(), stop.clone());
            tasks.spawn(serve_dhcp(served, socket, sink, stop));
        }

        let mut result = Ok(());
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!("{e}");
                    if result.is_ok() {
                        result = Err(e);
                    }
                    stop.cancel();
                }
                Err(join) => {
                    tracing::error!("agent task failed: {join}");
                    stop.cancel();
                }
            }
        }
        result
    }
}

/// Starts following the source. A file is loaded before this returns (a bad file fails the
/// start); a Kubernetes watch starts in the background and reports readiness when it lists.
fn start_source(
    source: Source,
    tasks: &mut JoinSet<Result<(), Error>>,
    served: &Arc<Served>,
    ready: &Arc<AtomicBool>,
    options_changed: &Arc<Notify>,
    stop: &CancellationToken,
) -> Result<(), Error> {
    let (served, notify, stop) = (served.clone(), options_changed.clone(), stop.clone());
    match source {
        Source::File(path) => {
            let (fingerprint, pool) = file::load(&path)?;
            let applied = served.apply(&pool)?;
            state::log_applied(&state::pool_name(&pool), &applied);
            drop(pool);
            metrics::sync(true);
            ready.store(true, Ordering::Release);
            metrics::ready(true);
            tracing::info!(file = %path.display(), leases = served.leases().len(), "loaded");
            tasks.spawn(async move {
                file::follow(path, &served, fingerprint, &notify, stop).await;
                Ok(())
            });
        }
        Source::Kube {
            client,
            namespace,
            name,
        } => {
            let ready = ready.clone();
            tasks.spawn(async move {
                watch::follow(client, &namespace, &name, &served, &ready, &notify, stop).await;
                Ok(())
            });
        }
    }
    Ok(())
}

/// Starts answering once the first IPPool has been applied (before that there is no server
/// identity to answer with), then serves until `stop`.
async fn serve_dhcp(
    served: Arc<Served>,
    socket: DhcpSocket,
    sink: conflict::Sink,
    stop: CancellationToken,
) -> Result<(), Error> {
    let nic = socket
        .interface()
        .map_or_else(|| socket.local_addr().to_string(), str::to_owned);
    let config = tokio::select! {
        () = stop.cancelled() => return Ok(()),
        config = served.configured() => config,
    };
    let (events_tx, mut events) = tokio::sync::mpsc::channel(4096);
    let mut conflicts = conflict::Reporter::new(sink, served.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            log_event(&event);
            conflicts.on_event(&event);
        }
    });
    tracing::info!(%nic, "serving DHCP");
    Server::new(config, served.leases().clone())
        .with_events(events_tx)
        .run(socket, stop)
        .await
        .map(|_| ())
        .map_err(|source| Error::Serve { nic, source })
}

fn log_event(event: &Event) {
    match event.kind() {
        // An address conflict: the operator must see it (and the conflict reporter acts).
        EventKind::Declined => tracing::warn!("{event}"),
        EventKind::Ignored(_) => tracing::debug!("{event}"),
        _ => tracing::info!("{event}"),
    }
}

/// The binary: builds the agent the flags describe and runs it until SIGTERM or SIGINT.
///
/// # Errors
/// See [`Agent::run`]; also a bad `--ippool-ref` or no Kubernetes configuration.
pub async fn main(args: Args, metrics: Option<PrometheusHandle>) -> Result<(), Error> {
    let source = match (&args.ippool_file, &args.ippool_ref) {
        (Some(path), _) => Source::File(path.clone()),
        (None, Some(pool_ref)) => {
            let (namespace, name) = watch::parse_ref(pool_ref)?;
            let client = vmdhcp_api::binary::kube_client(
                args.kubeconfig.as_deref(),
                args.kubecontext.clone(),
            )
            .await
            .map_err(|e| Error::Kube(e.to_string()))?;
            Source::Kube {
                client,
                namespace,
                name,
            }
        }
        (None, None) => {
            return Err(Error::PoolRef {
                value: String::new(),
            });
        }
    };
    let dhcp = if args.dry_run {
        Dhcp::Off
    } else {
        Dhcp::Interface(args.nic.clone())
    };
    let mut agent = Agent::new(source, dhcp);
    agent.http = Some(args.http_bind);
    agent.cache_dump = args.enable_cache_dump_api;
    agent.ntp_refresh = Duration::from_secs(args.ntp_refresh_secs);
    agent.metrics = metrics;
    agent.name.clone_from(&args.name);
    tracing::info!(name = %args.name, "vmdhcp-agent starting");

    let stop = CancellationToken::new();
    let signals = stop.clone();
    tokio::spawn(async move {
        vmdhcp_api::binary::shutdown_signal().await;
        tracing::info!("shutting down");
        signals.cancel();
    });
    agent.run(stop).await
}
