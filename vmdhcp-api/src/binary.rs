//! What the three binaries share around `main`: logging set-up, the async runtime and the exit
//! code, the Kubernetes client, the shutdown signal. This is the crate's only IO, behind the
//! `binary` feature; library users who only want the types leave it off.
//!
//! Configuration stays in each binary's clap arguments (flags and their environment
//! variables); the functions here take values, never read the environment themselves, except
//! `RUST_LOG`, which overrides the level for everything (documented in docs/configuration.md).

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `target`, span
    /// fields), for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    /// `text` or `json`.
    ///
    /// ```
    /// use vmdhcp_api::binary::LogFormat;
    /// assert_eq!("json".parse(), Ok(LogFormat::Json));
    /// assert_eq!(
    ///     "yaml".parse::<LogFormat>(),
    ///     Err("log format \"yaml\" is not one of text, json".to_owned())
    /// );
    /// ```
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format {other:?} is not one of text, json")),
        }
    }
}

impl Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Installs the global tracing subscriber: `RUST_LOG` when set (and valid), else `level`
/// (see [`crate::flags::log_level`]) for everything; written as `format` to stdout. Colour
/// only on a terminal, so Pod logs and journald get plain text.
pub fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs `main` on a multi-threaded runtime with `worker_threads` threads and turns its result
/// into the process's exit code: success, or failure with the error logged and written to
/// stderr prefixed by `name` (a container's last words show in `kubectl describe` even when
/// logging is filtered).
pub fn run<E: Display>(
    name: &str,
    worker_threads: usize,
    main: impl Future<Output = Result<(), E>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT. When the handlers cannot be installed it never
/// resolves: the process still ends on the signal, only not gracefully.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// A Kubernetes client could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

/// A client from `kubeconfig` (when that file exists) with `context`, else the in-cluster
/// configuration (a Pod's service account), else the default kubeconfig (`KUBECONFIG` or
/// `~/.kube/config`) with `context`.
///
/// # Errors
/// [`ClientError`] naming the file or saying that neither configuration was found.
pub async fn kube_client(
    kubeconfig: Option<&Path>,
    context: Option<String>,
) -> Result<kube::Client, ClientError> {
    let options = kube::config::KubeConfigOptions {
        context,
        ..Default::default()
    };
    let config = match kubeconfig.filter(|p| p.is_file()) {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| ClientError(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| ClientError(format!("{}: {e}", path.display())))?
        }
        None => match kube::Config::incluster() {
            Ok(config) => config,
            Err(_) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| ClientError(format!("no in-cluster configuration and {e}")))?,
        },
    };
    kube::Client::try_from(config).map_err(|e| ClientError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_round_trips_and_names_a_bad_value() {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.to_string().parse(), Ok(format));
        }
        assert_eq!(
            "JSON".parse::<LogFormat>(),
            Err("log format \"JSON\" is not one of text, json".to_owned())
        );
    }

    #[tokio::test]
    async fn a_kubeconfig_that_does_not_parse_is_named() {
        let dir = std::env::temp_dir().join(format!("vmdhcp-binary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kubeconfig");
        std::fs::write(&file, "clusters: [this is not a kubeconfig").unwrap();
        let Err(err) = kube_client(Some(&file), None).await else {
            panic!("a broken kubeconfig gave a client");
        };
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn run_maps_results_to_exit_codes() {
        assert_eq!(
            run("t", 1, async { Ok::<(), String>(()) }),
            ExitCode::SUCCESS
        );
        assert_eq!(
            run("t", 1, async { Err::<(), _>("boom".to_owned()) }),
            ExitCode::FAILURE
        );
    }
}
