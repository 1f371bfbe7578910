//! The IPPool reconciler's decisions, pure (spec/upstream.md §3.3, §3.5, §3.6): given the pool
//! and what was observed about its NAD and agent Pod, the status to write and the actions to
//! take. Upstream runs four handlers one after the other, each writing its condition; the same
//! steps run here in the same order and end in one status write.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use vmdhcp_api::condition::{set, set_result};
use vmdhcp_api::consts::{
    ANNOTATION_HOLD_AGENT_UPGRADE, COND_AGENT_READY, COND_CACHE_READY, COND_REGISTERED,
    COND_STOPPED, LABEL_CLUSTER_NETWORK, LABEL_IPPOOL_NAME, LABEL_IPPOOL_NAMESPACE, STATUS_FALSE,
    STATUS_TRUE,
};
use vmdhcp_api::ippool::{IPPool, IPPoolStatus, PodReference};
use vmdhcp_api::message::UpstreamError;
use vmdhcp_api::network::NamespacedName;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use crate::agent_pod::{self, AgentPodParams};

/// The controller's settings that shape agents.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// `--no-agent`.
    pub no_agent: bool,
    /// `--no-dhcp`.
    pub dry_run: bool,
    /// `--image`, formatted.
    pub image: String,
    /// `--namespace`.
    pub namespace: String,
    /// `--service-account-name`.
    pub service_account: String,
    /// Replace an agent whose node is gone or not Ready this long; `None`: never.
    pub node_grace: Option<Duration>,
}

/// The pool's NetworkAttachmentDefinition as read.
#[derive(Debug, Clone, PartialEq)]
pub enum NadSeen {
    /// It exists, with these labels.
    Found(BTreeMap<String, String>),
    /// It does not exist; the API server's message.
    Missing(String),
}

/// The agent Pod's node as read.
#[derive(Debug, Clone, Default)]
pub enum NodeSeen {
    /// Not read (no Pod, not scheduled, replacement off, or no permission).
    #[default]
    Unknown,
    /// The node does not exist.
    Missing,
    /// The node.
    Found(Box<Node>),
}

/// What was read for one pool.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The NAD, when the pool's network name parses.
    pub nad: Option<NadSeen>,
    /// The agent Pod (named by `status.agentPodRef`, else by the name scheme), if it exists.
    pub pod: Option<Pod>,
    /// The Pod's node.
    pub node: NodeSeen,
    /// Allocations whose MAC belongs to no vmnetcfg (see [`orphans`]).
    pub orphans: Vec<std::net::Ipv4Addr>,
}

/// Something to do besides writing the status.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolAction {
    /// Create the agent Pod; its UID goes into `status.agentPodRef.uid`.
    CreatePod(Box<Pod>),
    /// Delete the agent Pod `namespace/name`; `force` skips the grace period (its node is
    /// gone, nobody will confirm the kill).
    DeletePod {
        /// Pod namespace (the one recorded in `agentPodRef`, which an older controller may
        /// have put elsewhere than `--namespace`).
        namespace: String,
        /// Pod name.
        name: String,
        /// Zero grace period.
        force: bool,
    },
    /// Set these back-reference labels on the pool's NAD, leaving its other labels as they
    /// are then.
    LabelNad(BTreeMap<String, String>),
}

/// The outcome of planning.
#[derive(Debug)]
pub struct Plan {
    /// The status to write (when it differs from the current one).
    pub status: IPPoolStatus,
    /// What to do first.
    pub actions: Vec<PoolAction>,
    /// The allocator rebuilt from the status (for metrics and the cache API); `None` when the
    /// pool is paused or its status does not rebuild.
    pub ipam: Option<ipam::Pool>,
    /// Orphaned allocations released in `status`.
    pub released: Vec<std::net::Ipv4Addr>,
}

/// Plans one reconcile of `pool`.
pub fn plan(pool: &IPPool, seen: &Observed, settings: &AgentSettings, now: Timestamp) -> Plan {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let mut status = pool.status.clone().unwrap_or_default();
    let mut actions = Vec::new();

    if let Some(labels) = nad_labels(seen, &ns, &name) {
        actions.push(PoolAction::LabelNad(labels));
    }

    if pool.is_paused() {
        pause(seen, settings, &ns, &name, &mut status, &mut actions, now);
        return Plan {
            status,
            actions,
            ipam: None,
            released: Vec::new(),
        };
    }
    set(
        &mut status.conditions,
        COND_STOPPED,
        STATUS_FALSE,
        "",
        "",
        now,
    );

    // Registered (DeployAgent).
    let registered = deploy(pool, seen, settings, &mut status, &mut actions);
    set_result(
        &mut status.conditions,
        COND_REGISTERED,
        registered.as_ref().copied().map_err(String::as_str),
        now,
    );

    // CacheReady (BuildCache): the allocator is rebuilt from the status on every pass, so the
    // condition says whether the status rebuilds, not whether a process-local cache exists.
    let mut released = Vec::new();
    let ipam = match vmdhcp_api::convert::to_ipam_pool(pool) {
        Ok(mut ipam) => {
            for ip in &seen.orphans {
                if ipam.release(*ip).is_ok()
                    && vmdhcp_api::status::release_allocation(&mut status, *ip)
                {
                    released.push(*ip);
                }
            }
            set_result(&mut status.conditions, COND_CACHE_READY, Ok(()), now);
            Some(ipam)
        }
        Err(e) => {
            set_result(
                &mut status.conditions,
                COND_CACHE_READY,
                Err(&format!("ippool {ns}/{name}: {e}")),
                now,
            );
            None
        }
    };

    // AgentReady (MonitorAgent).
    let ready = monitor(seen, settings, &status, &ns, &name, now, &mut actions);
    set_result(
        &mut status.conditions,
        COND_AGENT_READY,
        ready.as_ref().copied().map_err(String::as_str),
        now,
    );

    // OnChange: counters and marks.
    if let Some(ipam) = &ipam
        && vmdhcp_api::status::refresh_ipv4(&mut status, &pool.spec.ipv4_config, ipam)
    {
        vmdhcp_api::status::touch(&mut status, now);
    }
    Plan {
        status,
        actions,
        ipam,
        released,
    }
}

/// A paused pool: its agent goes, every condition says so, its allocations stay.
fn pause(
    seen: &Observed,
    settings: &AgentSettings,
    ns: &str,
    name: &str,
    status: &mut IPPoolStatus,
    actions: &mut Vec<PoolAction>,
    now: Timestamp,
) {
    let disabled = UpstreamError::IpPoolDisabled {
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
    .to_string();
    if let Some(r) = status.agent_pod_ref.take()
        && seen.pod.is_some()
    {
        let namespace = if r.namespace.is_empty() {
            settings.namespace.clone()
        } else {
            r.namespace
        };
        actions.push(PoolAction::DeletePod {
            namespace,
            name: r.name,
            force: false,
        });
    }
    for cond in [COND_REGISTERED, COND_CACHE_READY, COND_AGENT_READY] {
        set_result(&mut status.conditions, cond, Err(&disabled), now);
    }
    set(
        &mut status.conditions,
        COND_STOPPED,
        STATUS_TRUE,
        "",
        "",
        now,
    );
}

/// The NAD labels to write, when they are not already the pool's.
fn nad_labels(seen: &Observed, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let Some(NadSeen::Found(labels)) = &seen.nad else {
        return None;
    };
    let ok = labels.get(LABEL_IPPOOL_NAMESPACE).map(String::as_str) == Some(ns)
        && labels.get(LABEL_IPPOOL_NAME).map(String::as_str) == Some(name);
    (!ok).then(|| {
        BTreeMap::from([
            (LABEL_IPPOOL_NAMESPACE.to_owned(), ns.to_owned()),
            (LABEL_IPPOOL_NAME.to_owned(), name.to_owned()),
        ])
    })
}

fn deploy(
    pool: &IPPool,
    seen: &Observed,
    settings: &AgentSettings,
    status: &mut IPPoolStatus,
    actions: &mut Vec<PoolAction>,
) -> Result<(), String> {
    if settings.no_agent {
        return Ok(());
    }
    let network = pool.network().map_err(|e| e.to_string())?;
    let cluster_network = match &seen.nad {
        Some(NadSeen::Found(labels)) => labels
            .get(LABEL_CLUSTER_NETWORK)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                UpstreamError::NoClusterNetwork {
                    network: network.to_string(),
                }
                .to_string()
            })?,
        Some(NadSeen::Missing(message)) => return Err(message.clone()),
        None => {
            return Err(format!(
                "network attachment definition {network} was not read"
            ));
        }
    };
    let held = pool
        .annotations()
        .contains_key(ANNOTATION_HOLD_AGENT_UPGRADE);
    if let Some(pod) = &seen.pod {
        let r = status.agent_pod_ref.get_or_insert_with(|| PodReference {
            // A Pod with our name but no reference: created before the reference could be
            // written (or by another controller version). Adopt it; MonitorAgent replaces it
            // if it runs the wrong image.
            namespace: settings.namespace.clone(),
            name: pod.name_any(),
            image: agent_pod::image(pod).unwrap_or_default().to_owned(),
            uid: pod.uid().unwrap_or_default(),
        });
        if !held || r.image.is_empty() {
            r.image.clone_from(&settings.image);
        }
        if agent_pod::is_terminating(pod) {
            return Err(UpstreamError::AgentMarkedForDeletion {
                pod: pod.name_any(),
            }
            .to_string());
        }
        if pod.uid().unwrap_or_default() != r.uid {
            return Err(UpstreamError::AgentUidMismatch {
                pod: pod.name_any(),
            }
            .to_string());
        }
        return Ok(());
    }
    let cfg = &pool.spec.ipv4_config;
    let server_ip = cfg
        .server_ip
        .parse()
        .map_err(|_| format!("ippool serverIP {:?} is not an IPv4 address", cfg.server_ip))?;
    let net: ipnet::Ipv4Net = cfg
        .cidr
        .parse()
        .map_err(|_| format!("ippool cidr {:?} is not an IPv4 CIDR", cfg.cidr))?;
    let pool_key = NamespacedName::new(pool.namespace().unwrap_or_default(), pool.name_any());
    let pod = agent_pod::build(&AgentPodParams {
        pool: &pool_key,
        nad: &network,
        cluster_network,
        server_ip,
        prefix_len: net.prefix_len(),
        namespace: &settings.namespace,
        image: &settings.image,
        service_account: &settings.service_account,
        dry_run: settings.dry_run,
    });
    status.agent_pod_ref = Some(PodReference {
        namespace: settings.namespace.clone(),
        name: pod.name_any(),
        image: settings.image.clone(),
        uid: String::new(),
    });
    actions.push(PoolAction::CreatePod(Box::new(pod)));
    Ok(())
}

fn monitor(
    seen: &Observed,
    settings: &AgentSettings,
    status: &IPPoolStatus,
    ns: &str,
    name: &str,
    now: Timestamp,
    actions: &mut Vec<PoolAction>,
) -> Result<(), String> {
    if settings.no_agent {
        return Ok(());
    }
    let Some(r) = &status.agent_pod_ref else {
        return Err(UpstreamError::AgentNotDeployed {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        }
        .to_string());
    };
    let Some(pod) = &seen.pod else {
        // Just created, or gone: either way not ready yet.
        return Err(UpstreamError::AgentNotReady {
            pod: r.name.clone(),
        }
        .to_string());
    };
    let pod_name = pod.name_any();
    let pod_namespace = pod
        .namespace()
        .unwrap_or_else(|| settings.namespace.clone());
    // A lost node first: a pod there never finishes terminating, obsolete or not.
    let node = match &seen.node {
        NodeSeen::Unknown => None,
        NodeSeen::Missing => Some(None),
        NodeSeen::Found(node) => Some(Some(node.as_ref())),
    };
    if let (Some(grace), Some(node)) = (settings.node_grace, node)
        && let Some(why) = agent_pod::node_lost(pod, node, now, grace)
    {
        actions.push(PoolAction::DeletePod {
            namespace: pod_namespace,
            name: pod_name.clone(),
            force: true,
        });
        return Err(format!(
            "{}; {why}",
            UpstreamError::AgentObsolete { pod: pod_name }
        ));
    }
    let obsolete =
        pod.uid().unwrap_or_default() != r.uid || agent_pod::image(pod) != Some(r.image.as_str());
    if obsolete {
        if agent_pod::is_terminating(pod) {
            return Err(UpstreamError::AgentMarkedForDeletion { pod: pod_name }.to_string());
        }
        actions.push(PoolAction::DeletePod {
            namespace: pod_namespace,
            name: pod_name.clone(),
            force: false,
        });
        return Err(UpstreamError::AgentObsolete { pod: pod_name }.to_string());
    }
    if !agent_pod::is_ready(pod) {
        return Err(UpstreamError::AgentNotReady { pod: pod_name }.to_string());
    }
    Ok(())
}

/// Allocations of `pool` whose MAC is in no vmnetcfg NIC on the pool's network (upstream never
/// collects them, so addresses of force-deleted vmnetcfgs leak). `vmnetcfgs` must be a
/// complete list; paused vmnetcfgs still own their MACs.
pub fn orphans(
    pool: &IPPool,
    vmnetcfgs: &[std::sync::Arc<VirtualMachineNetworkConfig>],
) -> Vec<std::net::Ipv4Addr> {
    let Ok(network) = pool.network() else {
        return Vec::new();
    };
    let owned: std::collections::HashSet<vmdhcp_api::MacAddr> = vmnetcfgs
        .iter()
        .flat_map(|cfg| {
            cfg.spec
                .network_configs
                .iter()
                .filter(|nic| cfg.network_of(nic).is_ok_and(|n| n == network))
                .filter_map(|nic| nic.mac().ok())
        })
        .collect();
    vmdhcp_api::convert::allocations(pool)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, mac)| {
            mac.parse::<vmdhcp_api::MacAddr>()
                .is_ok_and(|m| !owned.contains(&m))
        })
        .map(|(ip, _)| ip)
        .collect()
}

#[cfg(test)]
mod tests;
