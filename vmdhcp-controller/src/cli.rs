//! Command-line flags: upstream's names and environment variables, plus `--metrics-bind`, the
//! agent Pods' network set-up, resources, tolerations, priority class and cache dump API, the
//! node-loss fencing and orphan grace periods, batching, and the leader-election identity and
//! durations (upstream read those from the environment only).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
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

    /// Fence and replace an agent Pod whose node is gone, or not Ready with its Lease in
    /// kube-node-lease expired for this long, in seconds. 0 (the default, as upstream): never;
    /// a replacement can answer next to an agent still running on a node that is cut off.
    #[arg(long, default_value_t = 0)]
    pub agent_node_grace_secs: u64,

    /// How the DHCP server's address gets onto the agent's eth1: `init-container` (upstream's
    /// root `ip-setter` with `NET_ADMIN`; Pod Security level privileged) or `static-ipam` (a copy
    /// of the pool's NAD with CNI static IPAM in --namespace, no init container; level
    /// restricted; needs the CNI `static` plugin on the nodes).
    #[arg(long, value_enum, default_value_t = crate::agent_pod::NetworkSetup::InitContainer)]
    pub agent_network_setup: crate::agent_pod::NetworkSetup,

    /// Resources of the agent Pods' containers, a JSON `ResourceRequirements`
    /// (`{"requests":{"cpu":"10m"},"limits":{"memory":"64Mi"}}`).
    #[arg(long, value_name = "JSON", value_parser = json_flag::<ResourceRequirements>)]
    pub agent_resources: Option<ResourceRequirements>,

    /// Tolerations of the agent Pods, a JSON list of Tolerations.
    #[arg(long, value_name = "JSON", value_parser = json_flag::<Tolerations>)]
    pub agent_tolerations: Option<Tolerations>,

    /// `PriorityClass` of the agent Pods.
    #[arg(long, value_name = "NAME")]
    pub agent_priority_class_name: Option<String>,

    /// Start agents with --enable-cache-dump-api (their `/leases`).
    #[arg(long)]
    pub agent_enable_cache_dump_api: bool,

    /// Release an allocation whose MAC no vmnetcfg holds once the vmnetcfg this process saw
    /// holding it has been gone (confirmed by the API server) this long, in seconds. 0:
    /// never, as upstream. Entries never seen in a vmnetcfg are never released.
    #[arg(long, default_value_t = 600)]
    pub orphan_grace_secs: u64,

    /// At most this many allocations and releases of one IPPool go into one status write
    /// (1: one write per NIC). NICs waiting for a pool's writer are written together.
    #[arg(long, default_value_t = crate::pool_batch::DEFAULT_MAX, value_parser = batch_size)]
    pub ippool_batch_size: usize,

    /// How long a pool's writer waits for more NICs before a write that is not full, a Go
    /// duration (`0s`, `5ms`).
    #[arg(long, default_value = "0s", value_parser = crate::leader::parse_go_duration)]
    pub ippool_batch_wait: Duration,

    /// Kubeconfig file; when absent, the in-cluster configuration, else `~/.kube/config`.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Leader-election identity (upstream: the host name, the Pod name in a cluster). Empty:
    /// `/etc/hostname`, else `<name>-<pid>`.
    #[arg(long, env = "HOSTNAME", value_name = "IDENTITY")]
    pub leader_election_identity: Option<String>,

    /// How long the lease is valid without renewal, a Go duration (`45s`, `1m30s`); default
    /// 45 s, or 45 h in development mode.
    #[arg(long, env = vmdhcp_api::consts::ENV_ELECTION_LEASE_DURATION, value_name = "DURATION", default_value = "", hide_default_value = true, value_parser = optional_duration)]
    pub leader_election_lease_duration: std::option::Option<Duration>,

    /// How long the leader keeps trying to renew before it stops leading; default 30 s, or
    /// 30 h in development mode.
    #[arg(long, env = vmdhcp_api::consts::ENV_ELECTION_RENEW_DEADLINE, value_name = "DURATION", default_value = "", hide_default_value = true, value_parser = optional_duration)]
    pub leader_election_renew_deadline: std::option::Option<Duration>,

    /// Pause between two election attempts; default 2 s, or 2 h in development mode.
    #[arg(long, env = vmdhcp_api::consts::ENV_ELECTION_RETRY_PERIOD, value_name = "DURATION", default_value = "", hide_default_value = true, value_parser = optional_duration)]
    pub leader_election_retry_period: std::option::Option<Duration>,

    /// Development mode, as upstream: any non-empty value makes the default election
    /// durations hours instead of seconds.
    #[arg(long, env = vmdhcp_api::consts::ENV_DEV_MODE, value_name = "ANY", num_args = 0..=1, default_value = "", hide_default_value = true, default_missing_value = "true", value_parser = non_empty, action = clap::ArgAction::Set)]
    pub dev_mode: bool,

    /// Debug logging.
    #[arg(long, env = "VM_DHCP_CONTROLLER_DEBUG", value_parser = vmdhcp_api::flags::go_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = clap::ArgAction::Set)]
    pub debug: bool,

    /// Trace logging.
    #[arg(long, env = "VM_DHCP_CONTROLLER_TRACE", value_parser = vmdhcp_api::flags::go_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = clap::ArgAction::Set)]
    pub trace: bool,

    /// Log line format: `text` or `json` (one object per line).
    #[arg(long, env = "VMDHCP_LOG_FORMAT", default_value = "text", value_parser = str::parse::<vmdhcp_api::binary::LogFormat>)]
    pub log_format: vmdhcp_api::binary::LogFormat,
}

/// A Go duration; empty means the default, as upstream reads its variables. (The fields spell
/// out `std::option::Option` so that clap hands the parser empty values instead of treating
/// the flag as optional.)
fn optional_duration(value: &str) -> Result<Option<Duration>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        crate::leader::parse_go_duration(value).map(Some)
    }
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature of a clap value parser"
)]
fn non_empty(value: &str) -> Result<bool, String> {
    Ok(!value.is_empty())
}

fn batch_size(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_BATCH).contains(&n) => Ok(n),
        _ => Err(format!(
            "{value:?} is not a batch size from 1 to {MAX_BATCH}"
        )),
    }
}

/// The largest `--ippool-batch-size`: a batch only adds entries to a status written whole, so
/// its size bounds how many NICs share one write, not the request's size.
pub const MAX_BATCH: usize = 10_000;

/// A list of tolerations, as `--agent-tolerations` takes it.
pub type Tolerations = Vec<Toleration>;

/// A flag whose value is a Kubernetes object in JSON.
fn json_flag<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_json::from_str(value).map_err(|e| format!("{value:?} is not valid here: {e}"))
}

fn parse_image(value: &str) -> Result<ImageRef, String> {
    value.parse().map_err(|e: vmdhcp_api::Error| e.to_string())
}

impl Args {
    /// How pool writes are batched.
    pub fn batch(&self) -> crate::pool_batch::BatchSettings {
        crate::pool_batch::BatchSettings {
            max: self.ippool_batch_size,
            wait: self.ippool_batch_wait,
        }
    }

    /// What the flags add to every agent Pod, and its network set-up.
    pub fn agent_options(&self) -> crate::agent_pod::AgentOptions {
        crate::agent_pod::AgentOptions {
            network_setup: self.agent_network_setup,
            resources: self.agent_resources.clone(),
            tolerations: self.agent_tolerations.clone().unwrap_or_default(),
            priority_class_name: self
                .agent_priority_class_name
                .clone()
                .filter(|n| !n.is_empty()),
            cache_dump_api: self.agent_enable_cache_dump_api,
            log_format: self.log_format,
        }
    }

    /// The log filter the flags ask for (`RUST_LOG` wins when set).
    pub fn log_filter(&self) -> &'static str {
        vmdhcp_api::flags::log_level(self.debug, self.trace)
    }

    /// The leader-election durations the flags ask for.
    ///
    /// # Errors
    /// Durations that cannot work (a renew deadline not shorter than the lease, a zero retry).
    pub fn leader_timing(&self) -> Result<crate::leader::Timing, String> {
        crate::leader::Timing::new(
            self.leader_election_lease_duration,
            self.leader_election_renew_deadline,
            self.leader_election_retry_period,
            self.dev_mode,
        )
    }

    /// The leader-election identity: `--leader-election-identity` (`HOSTNAME`), else the host
    /// name in `/etc/hostname`, else `<name>-<pid>`.
    pub fn leader_identity(&self) -> String {
        self.leader_election_identity
            .clone()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("{}-{}", self.name, std::process::id()))
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
    fn leader_election_reads_upstreams_environment_names() {
        let command = Args::command();
        let env = |flag: &str| {
            command
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .and_then(|a| a.get_env())
                .and_then(|e| e.to_str())
                .map(str::to_owned)
        };
        assert_eq!(env("leader-election-identity").as_deref(), Some("HOSTNAME"));
        assert_eq!(
            env("leader-election-lease-duration").as_deref(),
            Some("CATTLE_ELECTION_LEASE_DURATION")
        );
        assert_eq!(
            env("leader-election-renew-deadline").as_deref(),
            Some("CATTLE_ELECTION_RENEW_DEADLINE")
        );
        assert_eq!(
            env("leader-election-retry-period").as_deref(),
            Some("CATTLE_ELECTION_RETRY_PERIOD")
        );
        assert_eq!(env("dev-mode").as_deref(), Some("CATTLE_DEV_MODE"));
    }

    #[test]
    fn leader_election_flags_set_identity_and_durations() {
        let args = Args::try_parse_from([
            "vmdhcp-controller",
            "--leader-election-identity",
            "replica-a",
            "--leader-election-lease-duration",
            "8s",
            "--leader-election-renew-deadline",
            "6s",
            "--leader-election-retry-period",
            "1s",
        ])
        .expect("parses");
        assert_eq!(args.leader_identity(), "replica-a");
        let timing = args.leader_timing().expect("valid");
        assert_eq!(
            (timing.lease, timing.renew_deadline, timing.retry),
            (
                Duration::from_secs(8),
                Duration::from_secs(6),
                Duration::from_secs(1)
            )
        );
        // Upstream's CATTLE_DEV_MODE: any non-empty value, even "false", means hours.
        let dev = Args::try_parse_from([
            "vmdhcp-controller",
            "--dev-mode=false",
            "--leader-election-retry-period=",
        ])
        .expect("an empty duration is the default");
        assert_eq!(
            dev.leader_timing().expect("valid").lease,
            Duration::from_secs(45 * 3600)
        );
        let bad = Args::try_parse_from([
            "vmdhcp-controller",
            "--leader-election-retry-period",
            "soon",
        ])
        .expect_err("not a duration");
        assert!(
            bad.to_string().contains("\"soon\" is not a duration"),
            "{bad}"
        );
        let short = Args::try_parse_from([
            "vmdhcp-controller",
            "--leader-election-lease-duration",
            "20s",
        ])
        .expect("parses");
        assert!(
            short.leader_timing().is_err(),
            "renew deadline 30 s >= lease 20 s"
        );
    }

    #[test]
    fn batching_flags_default_and_refuse_nonsense_naming_the_value() {
        let args = Args::try_parse_from(["vmdhcp-controller"]).expect("defaults");
        assert_eq!(args.batch(), crate::pool_batch::BatchSettings::default());
        let one = Args::try_parse_from([
            "vmdhcp-controller",
            "--ippool-batch-size",
            "1",
            "--ippool-batch-wait",
            "5ms",
        ])
        .expect("parses");
        assert_eq!(
            one.batch(),
            crate::pool_batch::BatchSettings {
                max: 1,
                wait: Duration::from_millis(5)
            }
        );
        for bad in ["0", "-3", "many", "10001"] {
            let err = Args::try_parse_from([
                "vmdhcp-controller".to_owned(),
                format!("--ippool-batch-size={bad}"),
            ])
            .expect_err("refused");
            assert!(
                err.to_string()
                    .contains(&format!("{bad:?} is not a batch size from 1 to 10000")),
                "{err}"
            );
        }
        let err = Args::try_parse_from(["vmdhcp-controller", "--ippool-batch-wait", "soon"])
            .expect_err("refused");
        assert!(
            err.to_string().contains("\"soon\" is not a duration"),
            "{err}"
        );
    }

    #[test]
    fn agent_flags_default_to_upstreams_pod_and_reach_the_options() {
        let defaults = Args::try_parse_from(["vmdhcp-controller"]).expect("defaults");
        assert_eq!(
            defaults.agent_options(),
            crate::agent_pod::AgentOptions::default()
        );
        assert_eq!(
            defaults.agent_node_grace_secs, 0,
            "no replacement without fencing by default"
        );
        assert_eq!(defaults.orphan_grace_secs, 600);
        let args = Args::try_parse_from([
            "vmdhcp-controller",
            "--agent-network-setup",
            "static-ipam",
            "--agent-resources",
            r#"{"requests":{"cpu":"10m"},"limits":{"memory":"64Mi"}}"#,
            "--agent-tolerations",
            r#"[{"key":"dedicated","operator":"Equal","value":"net","effect":"NoSchedule"}]"#,
            "--agent-priority-class-name",
            "system-node-critical",
            "--agent-enable-cache-dump-api",
        ])
        .expect("parses");
        let options = args.agent_options();
        assert_eq!(
            options.network_setup,
            crate::agent_pod::NetworkSetup::StaticIpam
        );
        assert_eq!(
            serde_json::to_value(&options.resources).expect("JSON"),
            serde_json::json!({"requests": {"cpu": "10m"}, "limits": {"memory": "64Mi"}})
        );
        assert_eq!(options.tolerations[0].key.as_deref(), Some("dedicated"));
        assert_eq!(
            options.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert!(options.cache_dump_api);
        for (flag, bad) in [
            ("--agent-resources", "{\"requests\": 3}"),
            ("--agent-tolerations", "{}"),
        ] {
            let err = Args::try_parse_from(["vmdhcp-controller", flag, bad]).expect_err("refused");
            assert!(
                err.to_string()
                    .contains(&format!("{bad:?} is not valid here")),
                "{err}"
            );
        }
        let err = Args::try_parse_from(["vmdhcp-controller", "--agent-network-setup", "dhcp"])
            .expect_err("refused");
        assert!(
            err.to_string().contains("init-container, static-ipam"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_image_names_the_value() {
        let err = Args::try_parse_from(["vmdhcp-controller", "--image", "repo:"])
            .expect_err("trailing colon");
        assert!(err.to_string().contains("colon without tag"), "{err}");
    }
}
