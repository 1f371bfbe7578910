//! `vmdhcp-webhook`: flags and logging; the rest is the library.

use std::process::ExitCode;

use clap::Parser;
use vmdhcp_webhook::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    vmdhcp_api::binary::init_logging(args.log_filter(), args.log_format);
    vmdhcp_api::binary::run("vmdhcp-webhook", 2, vmdhcp_webhook::run::main(args))
}
