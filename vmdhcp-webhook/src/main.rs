//! `vmdhcp-webhook`: flags and logging; the rest is the library.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vmdhcp_webhook::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(args.log_filter()));
    tracing_subscriber::fmt().with_env_filter(filter).init();
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
    match runtime.block_on(vmdhcp_webhook::run::main(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vmdhcp-webhook: {e}");
            ExitCode::FAILURE
        }
    }
}
