//! Command-line flags: upstream's names and environment variables, plus
//! the TLS and registration settings upstream hard-coded.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipnet::Ipv4Net;

use crate::error::Error;

/// vmdhcp-webhook: validates and defaults IPPools and VirtualMachineNetworkConfigs.
#[derive(Debug, Clone, Parser)]
#[command(name = "vmdhcp-webhook", version, about, long_about = None)]
pub struct Args {
    /// Base name of the webhook configurations, the Service and the Secrets
    /// (`<name>-ca`, `<name>-tls`). The env var is upstream's (a copy-paste from the agent,
    /// kept so existing manifests work).
    #[arg(long, env = "VM_DHCP_AGENT_NAME")]
    pub name: String,

    /// Namespace of the Service and the Secrets.
    #[arg(long, env = "NAMESPACE")]
    pub namespace: String,

    /// HTTPS port.
    #[arg(long, default_value_t = 8443)]
    pub https_port: u16,

    /// Address the HTTPS port is opened on.
    #[arg(long, default_value = "0.0.0.0")]
    pub https_address: IpAddr,

    /// The cluster's service network: an IPPool overlapping it is refused. Empty disables the
    /// check.
    #[arg(long, default_value = "10.53.0.0/16")]
    pub service_cidr: String,

    /// Accepted for compatibility with upstream's manifests; the caches need no worker threads.
    #[arg(long, default_value_t = 5)]
    pub threadiness: usize,

    /// Accepted for compatibility; unused upstream too.
    #[arg(long, hide = true, default_value = "harvester-vm-dhcp-controller")]
    pub controller_user: String,

    /// Accepted for compatibility; unused upstream too.
    #[arg(
        long,
        hide = true,
        default_value = "system:serviceaccount:kube-system:generic-garbage-collector"
    )]
    pub gc_user: String,

    /// More names or addresses for the serving certificate, besides `<name>.<namespace>.svc`
    /// (repeat the flag or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub extra_san: Vec<String>,

    /// Register the webhooks by URL (`https://host:port`, the paths are appended) instead of
    /// by Service: for running outside the cluster during development.
    #[arg(long)]
    pub webhook_url: Option<String>,

    /// Port of the Service the API server calls.
    #[arg(long, default_value_t = 443)]
    pub webhook_service_port: u16,

    /// How often the certificates and webhook configurations are checked, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_check_interval: u64,

    /// Kubeconfig file; when absent or missing, the in-cluster configuration.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context.
    #[arg(long, env = "KUBECONTEXT")]
    pub kubecontext: Option<String>,

    /// Debug logging.
    #[arg(long, env = "VM_DHCP_WEBHOOK_DEBUG", value_parser = vmdhcp_api::flags::go_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = clap::ArgAction::Set)]
    pub debug: bool,

    /// Trace logging.
    #[arg(long, env = "VM_DHCP_WEBHOOK_TRACE", value_parser = vmdhcp_api::flags::go_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = clap::ArgAction::Set)]
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

    /// `--service-cidr`, `None` when empty.
    ///
    /// # Errors
    /// [`Error::Flag`] when it is not an IPv4 prefix.
    pub fn service_cidr(&self) -> Result<Option<Ipv4Net>, Error> {
        let value = self.service_cidr.trim();
        if value.is_empty() {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|e| Error::Flag {
            flag: "--service-cidr",
            value: value.to_owned(),
            reason: format!("{e}"),
        })
    }

    /// `--tls-check-interval` as a duration.
    pub fn check_interval(&self) -> Duration {
        Duration::from_secs(self.tls_check_interval)
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
    fn the_charts_arguments_parse() {
        // What harvester/charts passes (spec §7.2).
        let args = Args::try_parse_from([
            "vmdhcp-webhook",
            "--name",
            "harvester-vm-dhcp-controller-webhook",
            "--namespace",
            "harvester-system",
            "--https-port",
            "8443",
            "--service-cidr",
            "10.53.0.0/16",
        ])
        .expect("chart args");
        assert_eq!(args.name, "harvester-vm-dhcp-controller-webhook");
        assert_eq!(args.https_port, 8443);
        assert_eq!(
            args.service_cidr().unwrap(),
            Some("10.53.0.0/16".parse().unwrap())
        );
        assert_eq!(args.webhook_service_port, 443);
        assert_eq!(args.threadiness, 5);
    }

    #[test]
    fn extra_sans_split_on_commas_and_repeat() {
        let args = Args::try_parse_from([
            "vmdhcp-webhook",
            "--name=w",
            "--namespace=ns",
            "--extra-san=127.0.0.1,localhost",
            "--extra-san",
            "::1",
        ])
        .unwrap();
        assert_eq!(args.extra_san, ["127.0.0.1", "localhost", "::1"]);
    }

    #[test]
    fn service_cidr_empty_disables_and_garbage_fails() {
        let mut args =
            Args::try_parse_from(["vmdhcp-webhook", "--name=w", "--namespace=ns"]).unwrap();
        args.service_cidr = String::new();
        assert_eq!(args.service_cidr().unwrap(), None);
        args.service_cidr = "10.53.0.0".into();
        let err = args.service_cidr().unwrap_err().to_string();
        assert!(err.starts_with("--service-cidr \"10.53.0.0\""), "{err}");
    }

    #[test]
    fn name_and_namespace_are_required() {
        let err = Args::try_parse_from(["vmdhcp-webhook", "--namespace=ns"]).unwrap_err();
        assert!(err.to_string().contains("--name"), "{err}");
    }
}
