//! The agent Pod of an IPPool — upstream's name, labels, Multus annotation, affinity, init
//! container and probes, with a least-privilege security context — the copy of the pool's
//! NetworkAttachmentDefinition that the `static-ipam` set-up attaches instead of the pool's
//! own, and the pure checks on a running Pod (upstream's `MonitorAgent`, plus node-loss
//! fencing).
//!
//! # Privileges
//! The `agent` container runs as user 65532 with every capability dropped, no privilege
//! escalation, the runtime's default seccomp profile and a read-only root file system: the
//! `restricted` Pod Security level. It binds UDP port 67 on `eth1` without
//! `CAP_NET_BIND_SERVICE`: the Pod sets the namespaced sysctl
//! `net.ipv4.ip_unprivileged_port_start=67`, one of the sysctls Pod Security counts as safe at
//! every level. A capability would not do: Kubernetes gives a non-root process no ambient
//! capabilities, and with `allowPrivilegeEscalation: false` (`no_new_privs`) the kernel
//! ignores file capabilities on the binary. `SO_BINDTODEVICE` needs no capability since Linux
//! 5.7; `SO_BROADCAST`, `IP_PKTINFO` and `SO_NO_CHECK` need none; the agent opens no raw or
//! packet socket and writes no file.
//!
//! What is left is putting the server address on `eth1`, which needs `CAP_NET_ADMIN` in the
//! Pod's network namespace:
//! - [`NetworkSetup::InitContainer`] (default, upstream's): the `ip-setter` init container runs
//!   `ip address add` as root with `NET_ADMIN` added (everything else dropped). Neither the
//!   `baseline` nor the `restricted` level allows adding `NET_ADMIN`: the Pod is `privileged`
//!   by Pod Security's measure, with the privilege confined to a container that exits before
//!   the agent starts.
//! - [`NetworkSetup::StaticIpam`]: the CNI plugin sets the address. The controller keeps a copy
//!   of the pool's NAD in the agents' namespace whose CNI configuration has `"ipam":
//!   {"type": "static", "addresses": [{"address": "<serverIP>/<prefix>"}]}`, attaches that
//!   copy, and the Pod has no init container: `restricted`. Needs the CNI `static` IPAM plugin
//!   on the nodes (`/opt/cni/bin/static`, part of the reference CNI plugins).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EnvVar, HTTPGetAction, Node, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Sysctl, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::{Value, json};
use vmdhcp_api::agent::{
    agent_args, agent_pod_name, cluster_network_node_label, ip_setter_script, multus_networks,
};
use vmdhcp_api::binary::LogFormat;
use vmdhcp_api::consts::{
    AGENT_CAPABILITY, AGENT_CONTAINER, AGENT_INIT_CONTAINER, AGENT_INIT_PULL_POLICY,
    ANNOTATION_MULTUS_NETWORKS, ENV_AGENT_NAME, HTTP_PORT, LABEL_IPPOOL_NAME,
    LABEL_IPPOOL_NAMESPACE, LABEL_VALUE_AGENT, LABEL_VM_DHCP_CONTROLLER,
    NODE_LABEL_CLUSTER_NETWORK_VALUE, PATH_HEALTHZ, PATH_READYZ,
};
use vmdhcp_api::network::NamespacedName;

/// User and group the `agent` container runs as (the image's `nonroot` user).
pub const AGENT_USER: i64 = 65532;

/// The namespaced sysctl that lets the non-root agent bind UDP port 67, and its value.
pub const UNPRIVILEGED_PORT_SYSCTL: (&str, &str) = ("net.ipv4.ip_unprivileged_port_start", "67");

/// The agent's `--enable-cache-dump-api` flag (serves `/leases`).
pub const AGENT_ARG_CACHE_DUMP: &str = "--enable-cache-dump-api";

/// Value of [`LABEL_VM_DHCP_CONTROLLER`] on the NAD copies of the `static-ipam` set-up.
pub const LABEL_VALUE_AGENT_NETWORK: &str = "agent-network";
/// Annotation of a NAD copy: the IPPool (`<ns>/<name>`) it serves.
pub const ANNOTATION_AGENT_NETWORK_POOL: &str = "network.harvesterhci.io/agent-network-ippool";
/// Annotation of a NAD copy: the NAD (`<ns>/<name>`) it copies.
pub const ANNOTATION_AGENT_NETWORK_SOURCE: &str = "network.harvesterhci.io/agent-network-source";

/// How the DHCP server's address gets onto the agent's `eth1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkSetup {
    /// The `ip-setter` init container, root with `NET_ADMIN` (upstream's; Pod Security level
    /// `privileged`).
    #[default]
    InitContainer,
    /// A copy of the pool's NAD with `static` IPAM in the agents' namespace; no init container
    /// (Pod Security level `restricted`; needs the CNI `static` plugin on the nodes).
    StaticIpam,
}

impl NetworkSetup {
    /// The strictest Pod Security level the agent Pod meets in this set-up.
    pub fn pod_security_level(self) -> &'static str {
        match self {
            Self::InitContainer => "privileged",
            Self::StaticIpam => "restricted",
        }
    }
}

/// What the operator adds to every agent Pod (controller flags, chart values under `agent.`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentOptions {
    /// How the server address is set up.
    pub network_setup: NetworkSetup,
    /// The `agent` container's resources (and the init container's, which runs first).
    pub resources: Option<ResourceRequirements>,
    /// The Pod's tolerations.
    pub tolerations: Vec<Toleration>,
    /// The Pod's `PriorityClass`.
    pub priority_class_name: Option<String>,
    /// Pass `--enable-cache-dump-api` to the agent (`/leases`).
    pub cache_dump_api: bool,
    /// The agent's log format (the controller's own `--log-format`); `text` adds no argument.
    pub log_format: LogFormat,
}

/// What the agent Pod of one pool is built from.
#[derive(Debug, Clone)]
pub struct AgentPodParams<'a> {
    /// The IPPool's namespace and name.
    pub pool: &'a NamespacedName,
    /// The pool's NetworkAttachmentDefinition.
    pub nad: &'a NamespacedName,
    /// The NAD's cluster network (its `network.harvesterhci.io/clusternetwork` label).
    pub cluster_network: &'a str,
    /// The pool's server address and prefix length, set on `eth1` by the init container.
    pub server_ip: Ipv4Addr,
    /// Prefix length of the pool's CIDR.
    pub prefix_len: u8,
    /// Namespace the agents run in (`--namespace`).
    pub namespace: &'a str,
    /// Agent image.
    pub image: &'a str,
    /// Agent service account.
    pub service_account: &'a str,
    /// `--no-dhcp`: the agent runs with `--dry-run`.
    pub dry_run: bool,
    /// The operator's additions and the network set-up.
    pub options: &'a AgentOptions,
}

/// The name of the pool's NAD copy in the agents' namespace (`static-ipam`): the agent Pod's
/// name, which is unique per pool and a valid object name.
pub fn agent_network_name(pool: &NamespacedName) -> String {
    agent_pod_name(&pool.namespace, &pool.name)
}

/// Builds the agent Pod: a bare Pod (no owner), upstream's name, labels, cluster-network node
/// affinity and probes; the Multus annotation names the pool's NAD and the `ip-setter` init
/// container sets the address ([`NetworkSetup::InitContainer`]), or the annotation names the
/// NAD copy and there is no init container ([`NetworkSetup::StaticIpam`]).
pub fn build(p: &AgentPodParams<'_>) -> Pod {
    let name = agent_pod_name(&p.pool.namespace, &p.pool.name);
    let options = p.options;
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(HTTP_PORT)),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    };
    let networks = match options.network_setup {
        NetworkSetup::InitContainer => multus_networks(&p.nad.namespace, &p.nad.name),
        NetworkSetup::StaticIpam => multus_networks(p.namespace, &agent_network_name(p.pool)),
    };
    let init_containers =
        (options.network_setup == NetworkSetup::InitContainer).then(|| vec![ip_setter(p)]);
    let mut args = agent_args(&p.pool.namespace, &p.pool.name, p.dry_run);
    if options.cache_dump_api {
        args.push(AGENT_ARG_CACHE_DUMP.to_owned());
    }
    if options.log_format != LogFormat::Text {
        args.extend(["--log-format".to_owned(), options.log_format.to_string()]);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(p.namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (
                    LABEL_VM_DHCP_CONTROLLER.to_owned(),
                    LABEL_VALUE_AGENT.to_owned(),
                ),
                (LABEL_IPPOOL_NAMESPACE.to_owned(), p.pool.namespace.clone()),
                (LABEL_IPPOOL_NAME.to_owned(), p.pool.name.clone()),
            ])),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_MULTUS_NETWORKS.to_owned(),
                networks,
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: cluster_network_node_label(p.cluster_network),
                                operator: "In".to_owned(),
                                values: Some(vec![NODE_LABEL_CLUSTER_NETWORK_VALUE.to_owned()]),
                            }]),
                            ..NodeSelectorTerm::default()
                        }],
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            }),
            service_account_name: Some(p.service_account.to_owned()),
            security_context: Some(pod_security_context()),
            priority_class_name: options.priority_class_name.clone(),
            tolerations: (!options.tolerations.is_empty()).then(|| options.tolerations.clone()),
            init_containers,
            containers: vec![Container {
                name: AGENT_CONTAINER.to_owned(),
                image: Some(p.image.to_owned()),
                args: Some(args),
                env: Some(vec![EnvVar {
                    name: ENV_AGENT_NAME.to_owned(),
                    value: Some(name),
                    value_from: None,
                }]),
                security_context: Some(unprivileged()),
                resources: options.resources.clone(),
                liveness_probe: Some(probe(PATH_HEALTHZ)),
                readiness_probe: Some(probe(PATH_READYZ)),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The `ip-setter` init container: `ip address add` on `eth1`, root with `NET_ADMIN` as
/// upstream, every other capability dropped.
fn ip_setter(p: &AgentPodParams<'_>) -> Container {
    Container {
        name: AGENT_INIT_CONTAINER.to_owned(),
        image: Some(p.image.to_owned()),
        image_pull_policy: Some(AGENT_INIT_PULL_POLICY.to_owned()),
        command: Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
        args: Some(vec![ip_setter_script(p.server_ip, p.prefix_len)]),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            capabilities: Some(Capabilities {
                add: Some(vec![AGENT_CAPABILITY.to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        resources: p.options.resources.clone(),
        ..Container::default()
    }
}

/// The `agent` container's security context: what Pod Security `restricted` asks of a
/// container (the Pod adds the seccomp profile).
fn unprivileged() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(AGENT_USER),
        run_as_group: Some(AGENT_USER),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".to_owned()]),
        }),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        ..SecurityContext::default()
    }
}

/// The Pod's security context: the runtime's seccomp profile, and the port sysctl that lets
/// the non-root agent bind UDP 67.
fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        sysctls: Some(vec![Sysctl {
            name: UNPRIVILEGED_PORT_SYSCTL.0.to_owned(),
            value: UNPRIVILEGED_PORT_SYSCTL.1.to_owned(),
        }]),
        ..PodSecurityContext::default()
    }
}

/// Why a NAD cannot be copied for the `static-ipam` set-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentNetworkError {
    /// `spec.config` is missing or not a JSON object.
    #[error("network attachment definition {nad}: spec.config is not a CNI configuration: {why}")]
    NotCni {
        /// The NAD, `<ns>/<name>`.
        nad: String,
        /// What is wrong.
        why: String,
    },
}

/// The CNI configuration `config` with its IPAM replaced by `static` with `address` (the
/// server's `<ip>/<prefix>`): on the configuration itself, or on the first plugin of a
/// configuration list (the interface plugin; the others are chained after it).
///
/// # Errors
/// `config` is not a JSON object, or a list whose first plugin is not one.
pub fn static_ipam_config(
    nad: &NamespacedName,
    config: &str,
    address: &str,
) -> Result<Value, AgentNetworkError> {
    let fail = |why: String| AgentNetworkError::NotCni {
        nad: nad.to_string(),
        why,
    };
    let mut value: Value = serde_json::from_str(config).map_err(|e| fail(e.to_string()))?;
    let ipam = json!({"type": "static", "addresses": [{"address": address}]});
    let target = match value.get_mut("plugins") {
        Some(Value::Array(plugins)) => plugins
            .first_mut()
            .ok_or_else(|| fail("an empty \"plugins\" list".to_owned()))?,
        Some(_) => return Err(fail("\"plugins\" is not a list".to_owned())),
        None => &mut value,
    };
    let Value::Object(plugin) = target else {
        return Err(fail("not a JSON object".to_owned()));
    };
    plugin.insert("ipam".to_owned(), ipam);
    Ok(value)
}

/// The NAD copy of the `static-ipam` set-up for pool `pool`, copying the CNI configuration
/// `source_config` of its NAD `source` with the server address as static IPAM. It lives in
/// `namespace` (the agents'), carries no labels of Harvester's (it is no VM network) and no
/// owner (an IPPool in another namespace cannot own it); the IPPool reconciler creates,
/// updates and deletes it.
///
/// # Errors
/// See [`static_ipam_config`].
pub fn agent_network(
    pool: &NamespacedName,
    source: &NamespacedName,
    source_config: &str,
    server_ip: Ipv4Addr,
    prefix_len: u8,
    namespace: &str,
) -> Result<DynamicObject, AgentNetworkError> {
    let config = static_ipam_config(source, source_config, &format!("{server_ip}/{prefix_len}"))?;
    let object = json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": agent_network_name(pool),
            "namespace": namespace,
            "labels": {LABEL_VM_DHCP_CONTROLLER: LABEL_VALUE_AGENT_NETWORK},
            "annotations": {
                ANNOTATION_AGENT_NETWORK_POOL: pool.to_string(),
                ANNOTATION_AGENT_NETWORK_SOURCE: source.to_string(),
            },
        },
        "spec": {"config": config.to_string()},
    });
    serde_json::from_value(object).map_err(|e| AgentNetworkError::NotCni {
        nad: source.to_string(),
        why: e.to_string(),
    })
}

/// Whether `nad` is the controller's copy for `pool` (by its label and its pool annotation): a
/// NAD of someone else's under the copy's name, or the copy of another pool whose name maps to
/// the same copy name (`a-b/c` and `a/b-c`), is neither overwritten nor deleted.
pub fn is_agent_network(nad: &DynamicObject, pool: &NamespacedName) -> bool {
    nad.labels()
        .get(LABEL_VM_DHCP_CONTROLLER)
        .map(String::as_str)
        == Some(LABEL_VALUE_AGENT_NETWORK)
        && nad
            .annotations()
            .get(ANNOTATION_AGENT_NETWORK_POOL)
            .is_some_and(|p| *p == pool.to_string())
}

/// The CNI configuration of a NAD (`spec.config`), parsed; `None` when absent or not JSON.
pub fn nad_config(nad: &DynamicObject) -> Option<Value> {
    nad.data
        .get("spec")
        .and_then(|s| s.get("config"))
        .and_then(Value::as_str)
        .and_then(|c| serde_json::from_str(c).ok())
}

/// Whether the Pod's `Ready` condition is true.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The image of the Pod's first container (what upstream compares with the desired one).
pub fn image(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
}

/// Whether the Pod is being deleted.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The node Lease's renewal deadline: `renewTime` (else `acquireTime`) plus
/// `leaseDurationSeconds` (the kubelet's default, 40 s, when absent).
fn lease_expiry(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(40).max(0));
    renewed
        .checked_add(jiff::SignedDuration::from_secs(duration))
        .ok()
}

/// Why the Pod may be force-deleted because of its node, if it may — the fence before a
/// replacement is started. Either the node object is gone (a node is deleted once it is known
/// to be gone, and the Pod garbage collector would delete its Pods too), or both signals
/// agree that its kubelet is gone: the node is not `Ready` and its Lease in `kube-node-lease`
/// (`lease`, `None` when missing) expired more than `grace` ago. A kubelet that still renews
/// its Lease can stop the Pod itself, so a node that is merely `NotReady` is never fenced; a
/// missing or unreadable Lease proves nothing. `node` is the Pod's node as read, `None` when
/// it does not exist. No fence is proof against a node that is cut off from the API server
/// but still on the VM network: its agent keeps answering (docs/operations.md).
pub fn node_lost(
    pod: &Pod,
    node: Option<&Node>,
    lease: Option<&Lease>,
    now: Timestamp,
    grace: std::time::Duration,
) -> Option<String> {
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())?;
    let Some(node) = node else {
        return Some(format!(
            "node {node_name} of agent pod {} no longer exists",
            pod.name_any()
        ));
    };
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    if ready.is_some_and(|c| c.status == "True") {
        return None;
    }
    let expired = lease_expiry(lease?)?;
    let grace = jiff::SignedDuration::try_from(grace).ok()?;
    (now.duration_since(expired) > grace).then(|| {
        format!(
            "node {node_name} of agent pod {} is not ready and its lease expired at {expired}",
            pod.name_any()
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params<'a>(
        pool: &'a NamespacedName,
        nad: &'a NamespacedName,
        options: &'a AgentOptions,
    ) -> AgentPodParams<'a> {
        AgentPodParams {
            pool,
            nad,
            cluster_network: "mgmt",
            server_ip: "192.168.48.77".parse().expect("ip"),
            prefix_len: 24,
            namespace: "harvester-system",
            image: "rancher/harvester-vm-dhcp-agent:v1.5.0",
            service_account: "vdc-agent",
            dry_run: false,
            options,
        }
    }

    #[test]
    fn the_pod_is_upstreams_with_a_non_root_agent() {
        let pool = NamespacedName::new("default", "net-48");
        let nad = NamespacedName::new("default", "net-48");
        let options = AgentOptions::default();
        let pod = serde_json::to_value(build(&params(&pool, &nad, &options))).expect("serialises");
        let want = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "default-net-48-agent",
                "namespace": "harvester-system",
                "labels": {
                    "network.harvesterhci.io/vm-dhcp-controller": "agent",
                    "network.harvesterhci.io/ippool-namespace": "default",
                    "network.harvesterhci.io/ippool-name": "net-48"
                },
                "annotations": {
                    "k8s.v1.cni.cncf.io/networks": "[{\"namespace\":\"default\",\"name\":\"net-48\",\"interface\":\"eth1\"}]"
                }
            },
            "spec": {
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{
                        "key": "network.harvesterhci.io/mgmt", "operator": "In", "values": ["true"]}]}]}}},
                "serviceAccountName": "vdc-agent",
                "securityContext": {
                    "seccompProfile": {"type": "RuntimeDefault"},
                    "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "67"}]
                },
                "initContainers": [{
                    "name": "ip-setter",
                    "image": "rancher/harvester-vm-dhcp-agent:v1.5.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/bin/sh", "-c"],
                    "args": ["\n#!/usr/bin/env sh\nset -ex\n\nip address flush dev eth1\nip address add 192.168.48.77/24 dev eth1\n"],
                    "securityContext": {"runAsUser": 0, "runAsGroup": 0, "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}
                }],
                "containers": [{
                    "name": "agent",
                    "image": "rancher/harvester-vm-dhcp-agent:v1.5.0",
                    "args": ["--ippool-ref", "default/net-48"],
                    "env": [{"name": "VM_DHCP_AGENT_NAME", "value": "default-net-48-agent"}],
                    "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": true,
                        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}}
                }]
            }
        });
        assert_eq!(pod, want);
        assert_eq!(
            NetworkSetup::InitContainer.pod_security_level(),
            "privileged"
        );
    }

    #[test]
    fn static_ipam_attaches_the_copy_and_has_no_init_container() {
        let pool = NamespacedName::new("default", "net-48");
        let nad = NamespacedName::new("vlans", "vlan-48");
        let options = AgentOptions {
            network_setup: NetworkSetup::StaticIpam,
            ..AgentOptions::default()
        };
        let pod = build(&params(&pool, &nad, &options));
        assert_eq!(
            pod.annotations()[ANNOTATION_MULTUS_NETWORKS],
            r#"[{"namespace":"harvester-system","name":"default-net-48-agent","interface":"eth1"}]"#
        );
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.init_containers, None);
        assert_eq!(NetworkSetup::StaticIpam.pod_security_level(), "restricted");
    }

    #[test]
    fn operator_options_reach_the_pod() {
        let pool = NamespacedName::new("default", "net-48");
        let resources: ResourceRequirements = serde_json::from_value(
            json!({"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}),
        )
        .expect("resources");
        let toleration: Toleration = serde_json::from_value(
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}),
        )
        .expect("toleration");
        let options = AgentOptions {
            network_setup: NetworkSetup::InitContainer,
            resources: Some(resources.clone()),
            tolerations: vec![toleration.clone()],
            priority_class_name: Some("system-node-critical".into()),
            cache_dump_api: true,
            log_format: LogFormat::Json,
        };
        let mut p = params(&pool, &pool, &options);
        p.dry_run = true;
        let spec = build(&p).spec.expect("spec");
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(spec.tolerations, Some(vec![toleration]));
        let agent = &spec.containers[0];
        assert_eq!(agent.resources, Some(resources.clone()));
        assert_eq!(
            agent.args.as_deref().expect("args"),
            [
                "--ippool-ref",
                "default/net-48",
                "--dry-run",
                "--enable-cache-dump-api",
                "--log-format",
                "json"
            ]
        );
        assert_eq!(
            spec.init_containers.expect("init")[0].resources,
            Some(resources)
        );
    }

    #[test]
    fn the_nad_copy_keeps_the_cni_configuration_and_sets_static_ipam() {
        let pool = NamespacedName::new("default", "net-48");
        let source = NamespacedName::new("default", "net-48");
        let config = r#"{"cniVersion":"0.3.1","name":"net-48","type":"bridge","bridge":"mgmt-br","promiscMode":true,"vlan":48,"ipam":{}}"#;
        let copy = agent_network(
            &pool,
            &source,
            config,
            "192.168.48.77".parse().expect("ip"),
            24,
            "harvester-system",
        )
        .expect("a CNI configuration");
        assert_eq!(copy.name_any(), "default-net-48-agent");
        assert_eq!(copy.namespace().as_deref(), Some("harvester-system"));
        assert_eq!(copy.labels()[LABEL_VM_DHCP_CONTROLLER], "agent-network");
        assert!(
            !copy.labels().contains_key(LABEL_IPPOOL_NAME),
            "no back-label: the copy serves no VM"
        );
        assert_eq!(
            copy.annotations()[ANNOTATION_AGENT_NETWORK_POOL],
            "default/net-48"
        );
        assert_eq!(
            nad_config(&copy),
            Some(
                json!({"cniVersion": "0.3.1", "name": "net-48", "type": "bridge", "bridge": "mgmt-br",
                "promiscMode": true, "vlan": 48,
                "ipam": {"type": "static", "addresses": [{"address": "192.168.48.77/24"}]}})
            )
        );

        let list = r#"{"cniVersion":"0.4.0","name":"n","plugins":[{"type":"bridge","ipam":{"type":"dhcp"}},{"type":"tuning"}]}"#;
        let value = static_ipam_config(&source, list, "10.0.0.2/24").expect("a list");
        assert_eq!(
            value["plugins"][0]["ipam"]["addresses"][0]["address"],
            "10.0.0.2/24"
        );
        assert_eq!(value["plugins"][1], json!({"type": "tuning"}));

        for bad in [
            "",
            "[1]",
            r#"{"plugins": 3}"#,
            r#"{"plugins": []}"#,
            r#"{"plugins": [1]}"#,
        ] {
            let err = static_ipam_config(&source, bad, "10.0.0.2/24").expect_err(bad);
            assert!(
                err.to_string().starts_with("network attachment definition default/net-48: spec.config is not a CNI configuration"),
                "{err}"
            );
        }
    }

    fn node(ready: &str) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "n1"}, "status": {"conditions": [
            {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        )
        .expect("node")
    }

    fn lease(renewed: &str) -> Lease {
        serde_json::from_value(
            json!({"metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": renewed}}),
        )
        .expect("lease")
    }

    #[test]
    fn a_pod_is_fenced_only_when_its_node_is_gone_or_not_ready_with_a_lease_expired_past_the_grace()
    {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1", "containers": []}}),
        )
        .expect("pod");
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("time");
        let grace = std::time::Duration::from_secs(300);
        let lost =
            |node: Option<&Node>, lease: Option<&Lease>| node_lost(&pod, node, lease, now, grace);
        // Renewed at 00:04:00, expired at 00:04:40: 5 min 20 s ago, past the grace.
        let old = lease("2026-01-01T00:04:00.000000Z");
        // Expired at 00:05:40: 4 min 20 s ago.
        let recent = lease("2026-01-01T00:05:00.000000Z");
        let cases: [(&str, Option<Node>, Option<&Lease>, bool); 8] = [
            ("node gone", None, None, true),
            (
                "ready, old lease (clock skew): the kubelet reports",
                Some(node("True")),
                Some(&old),
                false,
            ),
            (
                "not ready, lease expired past the grace",
                Some(node("Unknown")),
                Some(&old),
                true,
            ),
            (
                "not ready, lease expired within the grace",
                Some(node("Unknown")),
                Some(&recent),
                false,
            ),
            (
                "NotReady but renewing: the kubelet can stop the Pod",
                Some(node("False")),
                Some(&lease("2026-01-01T00:09:50.000000Z")),
                false,
            ),
            (
                "not ready, no lease: nothing proves the kubelet gone",
                Some(node("Unknown")),
                None,
                false,
            ),
            (
                "not ready, lease without times",
                Some(node("Unknown")),
                Some(
                    &serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {}}))
                        .expect("lease"),
                ),
                false,
            ),
            (
                "no Ready condition, lease expired",
                Some(serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("node")),
                Some(&old),
                true,
            ),
        ];
        for (what, node, lease, want) in cases {
            let got = lost(node.as_ref(), lease);
            assert_eq!(got.is_some(), want, "{what}: {got:?}");
        }
        assert!(lost(None, None).is_some_and(|m| m.contains("no longer exists")));
        assert_eq!(
            lost(Some(&node("Unknown")), Some(&old)).as_deref(),
            Some(
                "node n1 of agent pod a is not ready and its lease expired at 2026-01-01T00:04:40Z"
            )
        );
        let unscheduled: Pod =
            serde_json::from_value(json!({"metadata": {"name": "a"}, "spec": {"containers": []}}))
                .expect("pod");
        assert_eq!(node_lost(&unscheduled, None, None, now, grace), None);
    }
}
