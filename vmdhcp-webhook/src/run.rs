//! Wiring: certificates first (a replica that cannot get one must not serve), then the caches
//! and the HTTPS server, then the webhook configurations; after that, every
//! `--tls-check-interval` the Secrets and configurations are checked again, a renewed serving
//! certificate is swapped into the running server and a new CA re-registered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admission::Settings;
use crate::cache::Caches;
use crate::certs::Lifetimes;
use crate::cli::Args;
use crate::error::Error;
use crate::registration::{self, Registration, Target};
use crate::secrets::{self, Certificates};
use crate::server::{self, Admission, SYNC_WAIT};
use crate::tls::{self, CertResolver};
use crate::write::Outcome;

/// Everything a webhook instance is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--name`.
    pub name: String,
    /// `--namespace`.
    pub namespace: String,
    /// What the decisions depend on.
    pub settings: Settings,
    /// `--extra-san`.
    pub extra_sans: Vec<String>,
    /// Service (default) or `--webhook-url`.
    pub target: Target,
    /// Of generated certificates.
    pub lifetimes: Lifetimes,
    /// `--tls-check-interval`.
    pub check_interval: Duration,
}

impl Config {
    /// The configuration the flags describe.
    ///
    /// # Errors
    /// [`Error::Flag`] for a bad `--service-cidr` or `--webhook-url`.
    pub fn from_args(args: &Args) -> Result<Self, Error> {
        let target = match &args.webhook_url {
            Some(url) if url.starts_with("https://") => Target::Url(url.clone()),
            Some(url) => {
                return Err(Error::Flag {
                    flag: "--webhook-url",
                    value: url.clone(),
                    reason: "the API server only calls webhooks over https://".to_owned(),
                });
            }
            None => Target::Service {
                port: args.webhook_service_port,
            },
        };
        Ok(Self {
            name: args.name.clone(),
            namespace: args.namespace.clone(),
            settings: Settings {
                service_cidr: args.service_cidr()?,
            },
            extra_sans: args.extra_san.clone(),
            target,
            lifetimes: Lifetimes::default(),
            check_interval: args.check_interval(),
        })
    }

    /// The serving certificate's names: the Service's DNS name first (upstream's only one),
    /// then `--extra-san`, without duplicates or blanks.
    pub fn sans(&self) -> Vec<String> {
        let mut sans = vec![format!("{}.{}.svc", self.name, self.namespace)];
        for extra in &self.extra_sans {
            let extra = extra.trim();
            if !extra.is_empty() && !sans.iter().any(|s| s == extra) {
                sans.push(extra.to_owned());
            }
        }
        sans
    }

    fn registration(&self, certs: &Certificates) -> Registration {
        Registration {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            ca_bundle: certs.ca.cert.clone().into_bytes(),
            target: self.target.clone(),
        }
    }
}

/// Serves on `listener` until `stop` is cancelled.
///
/// # Errors
/// At start: the certificates cannot be loaded or stored, or the webhook configurations
/// cannot be written. Later failures are logged and retried at the next check.
pub async fn run(
    client: Client,
    config: Config,
    listener: TcpListener,
    stop: CancellationToken,
) -> Result<(), Error> {
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let sans = config.sans();
    let mut certs = secrets::ensure(
        &secrets_api,
        &config.name,
        &sans,
        config.lifetimes,
        Timestamp::now(),
    )
    .await?;
    log_certificates(&certs);
    let resolver = Arc::new(CertResolver::new(tls::certified_key(&certs.serving)?));
    let tls_config = Arc::new(tls::server_config(resolver.clone())?);

    // Everything below stops with `stop`, or with this function if it returns early.
    let tasks = stop.child_token();
    let _stop_tasks = tasks.clone().drop_guard();
    let (caches, drive) = Caches::start(&client, tasks.clone());
    tokio::spawn(drive);
    let (synced_tx, synced_rx) = watch::channel(false);
    {
        let caches = caches.clone();
        tokio::spawn(async move {
            match caches.wait_synced().await {
                Ok(()) => {
                    tracing::info!("caches synced; validating");
                    synced_tx.send_replace(true);
                }
                Err(e) => tracing::error!("{e}"),
            }
        });
    }
    let app = server::router(Admission {
        cluster: caches,
        settings: config.settings,
        synced: synced_rx,
        sync_wait: SYNC_WAIT,
    });
    let addr = listener.local_addr().ok();
    tokio::spawn(server::serve(listener, tls_config, app, tasks.clone()));
    tracing::info!(?addr, "serving HTTPS");

    log_registration(registration::apply(&client, &config.registration(&certs)).await?);

    let mut ticks = tokio::time::interval(config.check_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        match secrets::ensure(
            &secrets_api,
            &config.name,
            &sans,
            config.lifetimes,
            Timestamp::now(),
        )
        .await
        {
            Ok(fresh) => {
                if fresh.serving != certs.serving {
                    match tls::certified_key(&fresh.serving) {
                        Ok(key) => resolver.set(key),
                        Err(e) => {
                            tracing::error!(
                                "new serving certificate unusable, keeping the old: {e}"
                            );
                            continue;
                        }
                    }
                }
                if fresh.ca != certs.ca || fresh.serving != certs.serving {
                    log_certificates(&fresh);
                }
                certs = fresh;
            }
            Err(e) => tracing::warn!("certificate check failed, retrying later: {e}"),
        }
        // Also repairs configurations edited or deleted by hand.
        match registration::apply(&client, &config.registration(&certs)).await {
            Ok(outcomes) => log_registration(outcomes),
            Err(e) => tracing::warn!("registration failed, retrying later: {e}"),
        }
    }
}

fn log_certificates(certs: &Certificates) {
    let show = |pem: &str| crate::certs::inspect(pem).map(|i| (i.serial, i.not_after));
    if let (Ok((ca_serial, ca_until)), Ok((serial, until))) =
        (show(&certs.ca.cert), show(&certs.serving.cert))
    {
        tracing::info!(
            ca = ?certs.ca_outcome, %ca_serial, %ca_until,
            serving = ?certs.serving_outcome, %serial, %until,
            "certificates"
        );
    }
}

fn log_registration((validating, mutating): (Outcome, Outcome)) {
    if validating != Outcome::Kept || mutating != Outcome::Kept {
        tracing::info!(?validating, ?mutating, "webhook configurations written");
    }
}

/// The binary: binds `--https-address`:`--https-port` and runs until SIGTERM or SIGINT.
///
/// # Errors
/// See [`run`]; also bad flags, no Kubernetes configuration, or a taken port.
pub async fn main(args: Args) -> Result<(), Error> {
    let config = Config::from_args(&args)?;
    let client =
        vmdhcp_api::binary::kube_client(args.kubeconfig.as_deref(), args.kubecontext.clone())
            .await
            .map_err(|e| Error::Client(e.to_string()))?;
    let addr = SocketAddr::new(args.https_address, args.https_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    tracing::info!(name = %config.name, namespace = %config.namespace, "vmdhcp-webhook starting");
    let stop = CancellationToken::new();
    let signals = stop.clone();
    tokio::spawn(async move {
        vmdhcp_api::binary::shutdown_signal().await;
        tracing::info!("shutting down");
        signals.cancel();
    });
    run(client, config, listener, stop).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut line = vec!["vmdhcp-webhook", "--name=wh", "--namespace=ns"];
        line.extend_from_slice(extra);
        Args::try_parse_from(line).unwrap()
    }

    #[test]
    fn sans_start_with_the_service_and_skip_duplicates() {
        let config = Config::from_args(&args(&[
            "--extra-san=127.0.0.1,wh.ns.svc, ,localhost,127.0.0.1",
        ]))
        .unwrap();
        assert_eq!(config.sans(), ["wh.ns.svc", "127.0.0.1", "localhost"]);
    }

    #[test]
    fn target_is_the_service_unless_a_url_is_given() {
        let config = Config::from_args(&args(&[])).unwrap();
        assert_eq!(config.target, Target::Service { port: 443 });
        let config = Config::from_args(&args(&["--webhook-url=https://10.0.0.5:8443"])).unwrap();
        assert_eq!(config.target, Target::Url("https://10.0.0.5:8443".into()));
        let err = Config::from_args(&args(&["--webhook-url=http://x"])).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
    }
}
