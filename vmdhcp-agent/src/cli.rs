//! Command-line flags: upstream's names and environment variables (spec §8), plus the
//! standalone mode's `--ippool-file`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// vmdhcp-agent: serves one IPPool's leases over DHCPv4 on one interface.
#[derive(Debug, Clone, Parser)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each bool is an independent command-line switch"
)]
#[command(name = "vmdhcp-agent", version, about, long_about = None)]
pub struct Args {
    /// Instance name (logs).
    #[arg(long, env = "VM_DHCP_AGENT_NAME", default_value = "vm-dhcp-agent")]
    pub name: String,

    /// The IPPool to serve, `<namespace>/<name>` (Kubernetes mode).
    #[arg(
        long,
        env = "IPPOOL_REF",
        required_unless_present = "ippool_file",
        conflicts_with = "ippool_file"
    )]
    pub ippool_ref: Option<String>,

    /// Standalone mode: serve the IPPool (and VirtualMachineNetworkConfigs) in this YAML
    /// file, re-read when it changes. No Kubernetes needed.
    #[arg(long, value_name = "PATH")]
    pub ippool_file: Option<PathBuf>,

    /// Network interface to serve DHCP on.
    #[arg(long, default_value = "eth1")]
    pub nic: String,

    /// Keep the lease table in sync but open no DHCP socket.
    #[arg(long)]
    pub dry_run: bool,

    /// Serve `/leases` on the HTTP port.
    #[arg(long)]
    pub enable_cache_dump_api: bool,

    /// Kubeconfig file; when absent or missing, the in-cluster configuration.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context.
    #[arg(long, env = "KUBECONTEXT")]
    pub kubecontext: Option<String>,

    /// Address of `/healthz`, `/readyz`, `/metrics`, `/leases` (upstream: always :8080).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_bind: SocketAddr,

    /// How often NTP host names are resolved again, in seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub ntp_refresh_secs: u64,

    /// Debug logging.
    #[arg(long, env = "VM_DHCP_AGENT_DEBUG", value_parser = vmdhcp_api::flags::go_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = clap::ArgAction::Set)]
    pub debug: bool,

    /// Trace logging.
    #[arg(long, env = "VM_DHCP_AGENT_TRACE", value_parser = vmdhcp_api::flags::go_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = clap::ArgAction::Set)]
    pub trace: bool,

    /// Log line format: `text` or `json` (one object per line).
    #[arg(long, env = "VMDHCP_LOG_FORMAT", default_value = "text", value_parser = str::parse::<vmdhcp_api::binary::LogFormat>)]
    pub log_format: vmdhcp_api::binary::LogFormat,
}

impl Args {
    /// The log filter the flags ask for (`RUST_LOG` wins when set).
    pub fn log_filter(&self) -> &'static str {
        vmdhcp_api::flags::log_level(self.debug, self.trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_controllers_arguments_parse() {
        let mut line = vec!["vmdhcp-agent".to_owned()];
        line.extend(vmdhcp_api::agent::agent_args("default", "net-48", true));
        let args = Args::try_parse_from(line).expect("controller's args");
        assert_eq!(args.ippool_ref.as_deref(), Some("default/net-48"));
        assert!(args.dry_run);
        assert_eq!(args.nic, "eth1");
        assert_eq!(args.http_bind.port(), 8080);
    }

    #[test]
    fn one_source_is_required_and_two_conflict() {
        let err = Args::try_parse_from(["vmdhcp-agent"]).expect_err("no source");
        assert!(err.to_string().contains("--ippool-ref"), "{err}");
        let err = Args::try_parse_from([
            "vmdhcp-agent",
            "--ippool-ref",
            "a/b",
            "--ippool-file",
            "/x.yaml",
        ])
        .expect_err("both");
        assert!(err.to_string().contains("cannot be used with"), "{err}");
    }
}
