//! Command-line flags: upstream's names and environment variables (spec §8), plus
//! `--metrics-bind` and the agent replacement grace period.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use vmdhcp_api::image::ImageRef;

/// vmdhcp-controller: allocates VM addresses from IPPools and runs one DHCP agent per IPPool.
#[derive(Debug, Clone, Parser)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each bool is an independent command-line switch"
)]
#[command(name = "vmdhcp-controller", version, about, long_about = None)]
pub struct Args {
    /// Instance name (logs, leader-election identity prefix).
    #[arg(
        long,
        env = "VM_DHCP_CONTROLLER_NAME",
        default_value = "vm-dhcp-controller"
    )]
    pub name: String,

    /// Namespace the agent Pods run in.
    #[arg(long, env = "AGENT_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// Agent image, `repository[:tag][@digest]`.
    #[arg(
        long,
        env = "AGENT_IMAGE",
        default_value = "rancher/harvester-vm-dhcp-agent:main-head",
        value_parser = parse_image
    )]
    pub image: ImageRef,

    /// Service account of the agent Pods.
    #[arg(
        long,
        env = "AGENT_SERVICE_ACCOUNT_NAME",
        default_value = "vm-dhcp-controller-agent"
    )]
    pub service_account_name: String,

    /// Reconcile without leader election (one replica only).
    #[arg(long)]
    pub no_leader_election: bool,

    /// Never create agent Pods (their conditions report success).
    #[arg(long)]
    pub no_agent: bool,

    /// Create agent Pods with `--dry-run` (lease tables sync, no DHCP socket).
    #[arg(long)]
    pub no_dhcp: bool,

    /// Serve `/ipams/<ns>/<nad>` and `/caches/<ns>/<nad>`.
    #[arg(long)]
    pub enable_cache_dump_api: bool,

    /// Address of `/healthz`, `/readyz`, `/metrics` (upstream: always :8080).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_bind: SocketAddr,

    /// Replace an agent Pod whose node is gone or not Ready for this long, in seconds
    /// (0 turns replacement off, as upstream).
    #[arg(long, default_value_t = 300)]
    pub agent_node_grace_secs: u64,

    /// Kubeconfig file; when absent, the in-cluster configuration, else `~/.kube/config`.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Debug logging.
    #[arg(long, env = "VM_DHCP_CONTROLLER_DEBUG", value_parser = vmdhcp_api::flags::go_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = clap::ArgAction::Set)]
    pub debug: bool,

    /// Trace logging.
    #[arg(long, env = "VM_DHCP_CONTROLLER_TRACE", value_parser = vmdhcp_api::flags::go_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = clap::ArgAction::Set)]
    pub trace: bool,
}

fn parse_image(value: &str) -> Result<ImageRef, String> {
    value.parse().map_err(|e: vmdhcp_api::Error| e.to_string())
}

impl Args {
    /// The log filter the flags ask for (`RUST_LOG` wins when set).
    pub fn log_filter(&self) -> &'static str {
        vmdhcp_api::flags::log_level(self.debug, self.trace)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn upstream_chart_arguments_parse() {
        let args = Args::try_parse_from([
            "vmdhcp-controller",
            "--name",
            "harvester-vm-dhcp-controller",
            "--namespace",
            "harvester-system",
            "--image",
            "rancher/harvester-vm-dhcp-agent:v1.5.0",
            "--service-account-name",
            "harvester-vm-dhcp-controller-agent",
        ])
        .expect("upstream's arguments");
        assert_eq!(args.image.tag.as_deref(), Some("v1.5.0"));
        assert_eq!(args.metrics_bind.port(), 8080);
        assert!(!args.no_agent);
    }

    #[test]
    fn debug_and_trace_read_booleans_like_go_and_never_refuse_one() {
        let parse = |extra: &[&str]| {
            let mut line = vec!["vmdhcp-controller"];
            line.extend_from_slice(extra);
            Args::try_parse_from(line).expect("parses")
        };
        assert!(!parse(&[]).debug);
        assert!(parse(&["--debug"]).debug);
        assert!(parse(&["--debug=1"]).debug);
        assert!(parse(&["--trace=True"]).trace);
        assert!(
            !parse(&["--debug=yes"]).debug,
            "Go's ParseBool refuses it; upstream falls back to false"
        );
        assert_eq!(parse(&["--trace"]).log_filter(), "trace");
    }

    #[test]
    fn a_bad_image_names_the_value() {
        let err = Args::try_parse_from(["vmdhcp-controller", "--image", "repo:"])
            .expect_err("trailing colon");
        assert!(err.to_string().contains("colon without tag"), "{err}");
    }
}
