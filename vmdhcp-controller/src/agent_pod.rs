//! The agent Pod of an IPPool, exactly as upstream builds it, and the pure checks on a running
//! one (upstream's `MonitorAgent`, plus node-loss replacement).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EnvVar, HTTPGetAction, Node, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Probe, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use vmdhcp_api::agent::{
    agent_args, agent_pod_name, cluster_network_node_label, ip_setter_script, multus_networks,
};
use vmdhcp_api::consts::{
    AGENT_CAPABILITY, AGENT_CONTAINER, AGENT_INIT_CONTAINER, AGENT_INIT_PULL_POLICY,
    ANNOTATION_MULTUS_NETWORKS, ENV_AGENT_NAME, HTTP_PORT, LABEL_IPPOOL_NAME,
    LABEL_IPPOOL_NAMESPACE, LABEL_VALUE_AGENT, LABEL_VM_DHCP_CONTROLLER,
    NODE_LABEL_CLUSTER_NETWORK_VALUE, PATH_HEALTHZ, PATH_READYZ,
};
use vmdhcp_api::network::NamespacedName;

/// The one capability the `agent` container keeps.
pub const AGENT_RUNTIME_CAPABILITY: &str = "NET_BIND_SERVICE";

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
}

/// Builds the agent Pod: a bare Pod (no owner), upstream's name, labels, Multus annotation,
/// cluster-network node affinity, `ip-setter` init container, probes.
pub fn build(p: &AgentPodParams<'_>) -> Pod {
    let name = agent_pod_name(&p.pool.namespace, &p.pool.name);
    // The init container sets the server address on eth1: root with NET_ADMIN, as upstream.
    // The agent only binds UDP 67 on eth1 (SO_BINDTODEVICE needs no capability since Linux
    // 5.7, replies are broadcast, not injected into the ARP table), so it keeps
    // NET_BIND_SERVICE alone; upstream gave it NET_ADMIN too. Root keeps the added capability
    // effective without ambient capabilities.
    let root = |add: &str, drop_all: bool| SecurityContext {
        run_as_user: Some(0),
        run_as_group: Some(0),
        capabilities: Some(Capabilities {
            add: Some(vec![add.to_owned()]),
            drop: drop_all.then(|| vec!["ALL".to_owned()]),
        }),
        allow_privilege_escalation: drop_all.then_some(false),
        ..SecurityContext::default()
    };
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(HTTP_PORT)),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    };
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
                multus_networks(&p.nad.namespace, &p.nad.name),
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
            init_containers: Some(vec![Container {
                name: AGENT_INIT_CONTAINER.to_owned(),
                image: Some(p.image.to_owned()),
                image_pull_policy: Some(AGENT_INIT_PULL_POLICY.to_owned()),
                command: Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
                args: Some(vec![ip_setter_script(p.server_ip, p.prefix_len)]),
                security_context: Some(root(AGENT_CAPABILITY, false)),
                ..Container::default()
            }]),
            containers: vec![Container {
                name: AGENT_CONTAINER.to_owned(),
                image: Some(p.image.to_owned()),
                args: Some(agent_args(&p.pool.namespace, &p.pool.name, p.dry_run)),
                env: Some(vec![EnvVar {
                    name: ENV_AGENT_NAME.to_owned(),
                    value: Some(name),
                    value_from: None,
                }]),
                security_context: Some(root(AGENT_RUNTIME_CAPABILITY, true)),
                liveness_probe: Some(probe(PATH_HEALTHZ)),
                readiness_probe: Some(probe(PATH_READYZ)),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
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

/// Why the Pod should be replaced because of its node, if it should: the node is gone, or
/// has not been Ready for longer than `grace` (upstream leaves such pools without DHCP,
/// issues #8205, #8794). `node` is the Pod's node as read, `None` when it does not exist.
pub fn node_lost(
    pod: &Pod,
    node: Option<&Node>,
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
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))?;
    if ready.status == "True" {
        return None;
    }
    let since = ready.last_transition_time.as_ref()?.0;
    let grace = jiff::SignedDuration::try_from(grace).ok()?;
    (now.duration_since(since) > grace).then(|| {
        format!(
            "node {node_name} of agent pod {} not ready since {since}",
            pod.name_any()
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params<'a>(pool: &'a NamespacedName, nad: &'a NamespacedName) -> AgentPodParams<'a> {
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
        }
    }

    #[test]
    fn the_pod_is_upstreams() {
        let pool = NamespacedName::new("default", "net-48");
        let nad = NamespacedName::new("default", "net-48");
        let pod = serde_json::to_value(build(&params(&pool, &nad))).expect("serialises");
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
                "initContainers": [{
                    "name": "ip-setter",
                    "image": "rancher/harvester-vm-dhcp-agent:v1.5.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/bin/sh", "-c"],
                    "args": ["\n#!/usr/bin/env sh\nset -ex\n\nip address flush dev eth1\nip address add 192.168.48.77/24 dev eth1\n"],
                    "securityContext": {"runAsUser": 0, "runAsGroup": 0, "capabilities": {"add": ["NET_ADMIN"]}}
                }],
                "containers": [{
                    "name": "agent",
                    "image": "rancher/harvester-vm-dhcp-agent:v1.5.0",
                    "args": ["--ippool-ref", "default/net-48"],
                    "env": [{"name": "VM_DHCP_AGENT_NAME", "value": "default-net-48-agent"}],
                    "securityContext": {"runAsUser": 0, "runAsGroup": 0, "allowPrivilegeEscalation": false,
                        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}}
                }]
            }
        });
        assert_eq!(pod, want);
    }

    #[test]
    fn no_dhcp_adds_dry_run() {
        let pool = NamespacedName::new("default", "net-48");
        let mut p = params(&pool, &pool);
        p.dry_run = true;
        let pod = build(&p);
        let args = pod.spec.expect("spec").containers[0]
            .args
            .clone()
            .expect("args");
        assert_eq!(args, ["--ippool-ref", "default/net-48", "--dry-run"]);
    }

    fn node(ready: &str, since: &str) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "n1"}, "status": {"conditions": [
            {"type": "Ready", "status": ready, "lastTransitionTime": since}]}}),
        )
        .expect("node")
    }

    #[test]
    fn a_pod_is_replaced_only_when_its_node_is_gone_or_not_ready_past_the_grace() {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1", "containers": []}}),
        )
        .expect("pod");
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("time");
        let grace = std::time::Duration::from_secs(300);
        assert!(node_lost(&pod, None, now, grace).is_some_and(|m| m.contains("no longer exists")));
        assert_eq!(
            node_lost(
                &pod,
                Some(&node("True", "2026-01-01T00:00:00Z")),
                now,
                grace
            ),
            None
        );
        assert_eq!(
            node_lost(
                &pod,
                Some(&node("Unknown", "2026-01-01T00:06:00Z")),
                now,
                grace
            ),
            None
        );
        assert!(
            node_lost(
                &pod,
                Some(&node("Unknown", "2026-01-01T00:04:00Z")),
                now,
                grace
            )
            .is_some()
        );
        let unscheduled: Pod =
            serde_json::from_value(json!({"metadata": {"name": "a"}, "spec": {"containers": []}}))
                .expect("pod");
        assert_eq!(node_lost(&unscheduled, None, now, grace), None);
    }
}
