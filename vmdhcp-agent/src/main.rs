//! `vmdhcp-agent`: flags, logging, metrics recorder; the rest is the library.

use std::process::ExitCode;

use clap::Parser;
use vmdhcp_agent::cli::Args;

fn main() -> ExitCode {
    vmdhcp_agent::memory::tune();
    let args = Args::parse();
    vmdhcp_api::binary::init_logging(args.log_filter(), args.log_format);
    let metrics = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::error!("{}", vmdhcp_agent::Error::Metrics(e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    vmdhcp_api::binary::run("vmdhcp-agent", 2, vmdhcp_agent::run::main(args, metrics))
}
