//! `vmdhcp-agent`: flags, logging, metrics recorder; the rest is the library.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vmdhcp_agent::cli::Args;

fn main() -> ExitCode {
    vmdhcp_agent::memory::tune();
    let args = Args::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(args.log_filter()));
    // Colour only on a terminal: pod logs and journald get plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let metrics = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::error!("{}", vmdhcp_agent::Error::Metrics(e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(vmdhcp_agent::run::main(args, metrics)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vmdhcp-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
