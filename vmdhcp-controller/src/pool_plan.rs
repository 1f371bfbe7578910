//! The IPPool reconciler's decisions, pure: given the pool, what was observed about its NAD and
//! agent Pod, and what became of the actions already carried out in this pass, the status to
//! write and the actions still to take. Upstream runs four handlers one after the other, each
//! writing its own condition, and one handler's failure never keeps the others from running;
//! the same steps run here in the same order and end in one status write. A failed action
//! (the agent Pod create refused, the NAD not writable) shows in its condition and in a Warning
//! Event; the other conditions, the counters and the marks are written all the same.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::DynamicObject;
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

use crate::agent_pod::{self, AgentOptions, AgentPodParams, NetworkSetup};
use crate::gc;

/// The controller's settings the IPPool reconciler follows: what shapes agents, when they are
/// replaced, when orphans are released.
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
    /// Replace an agent whose node is gone, or not Ready with its Lease expired this long
    /// ([`agent_pod::node_lost`]); `None`: never (the default, as upstream).
    pub node_grace: Option<Duration>,
    /// The operator's additions to agent Pods and the network set-up.
    pub agent: AgentOptions,
    /// Release an orphaned allocation once its vmnetcfg has been gone this long
    /// ([`gc::decide`]); `None`: never.
    pub orphan_grace: Option<Duration>,
}

/// The pool's NetworkAttachmentDefinition as read.
#[derive(Debug, Clone, PartialEq)]
pub enum NadSeen {
    /// It exists, with these labels.
    Found(BTreeMap<String, String>),
    /// It does not exist; the API server's message.
    Missing(String),
    /// It could not be read (forbidden, server error); the API server's message.
    Unreadable(String),
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

/// The pool's NAD copy in the agents' namespace (`static-ipam` set-up) as read.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentNetworkSeen {
    /// It does not exist.
    Missing,
    /// It exists.
    Found(Box<DynamicObject>),
    /// It could not be read; the API server's message.
    Unreadable(String),
}

/// What was read for one pool.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The NAD, when the pool's network name parses.
    pub nad: Option<NadSeen>,
    /// The NAD's CNI configuration (`spec.config`), when it has one.
    pub nad_config: Option<String>,
    /// The NAD copy of the `static-ipam` set-up; `None`: not read (other set-up).
    pub agent_network: Option<AgentNetworkSeen>,
    /// The agent Pod (named by `status.agentPodRef`, else by the name scheme), if it exists.
    pub pod: Option<Pod>,
    /// Why the agent Pod could not be read (the API server's message), when it could not.
    pub pod_unreadable: Option<String>,
    /// The Pod's node.
    pub node: NodeSeen,
    /// The node's Lease in `kube-node-lease`, when read and found.
    pub node_lease: Option<Lease>,
    /// The earliest end of a grace period of an orphan whose vmnetcfg is gone: when to look
    /// again.
    pub orphan_wait: Option<Timestamp>,
    /// Orphaned allocations to release ([`gc::decide`] said so).
    pub orphans: Vec<gc::Release>,
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
    /// Create or update the pool's NAD copy (`static-ipam`) to be this one.
    ApplyAgentNetwork(Box<DynamicObject>),
    /// Delete the pool's NAD copy `namespace/name` (`static-ipam`, pool paused).
    DeleteAgentNetwork {
        /// Its namespace (the agents').
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// What became of the actions carried out so far in this pass: the glue carries out a plan's
/// actions, records them here and plans again, so that the status it writes says how they went
/// (upstream's status handlers record their own error the same way). `None`: not tried.
#[derive(Debug, Clone, Default)]
pub struct Done {
    /// The agent Pod create: the Pod as created (or the one that was already there), or the
    /// API server's message.
    pub create_pod: Option<Result<Pod, String>>,
    /// The agent Pod deletion (a Pod already gone counts as deleted), or the API server's
    /// message.
    pub delete_pod: Option<Result<(), String>>,
    /// The NAD back-labels, or the API server's message.
    pub label_nad: Option<Result<(), String>>,
    /// The NAD copy's create, update or deletion, or the API server's message.
    pub agent_network: Option<Result<(), String>>,
}

/// Something that failed in this pass: the status shows it; it also becomes a Warning Event
/// on the pool, and the reconcile is retried later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The Event's reason.
    pub reason: &'static str,
    /// The Event's note, naming the object and quoting the API server.
    pub note: String,
}

/// Event reason: the agent Pod could not be created.
pub const REASON_AGENT_DEPLOY_FAILED: &str = "AgentDeployFailed";
/// Event reason: the agent Pod could not be deleted.
pub const REASON_AGENT_DELETE_FAILED: &str = "AgentDeleteFailed";
/// Event reason: the agent Pod could not be read.
pub const REASON_AGENT_READ_FAILED: &str = "AgentReadFailed";
/// Event reason: the NAD could not be read.
pub const REASON_NAD_READ_FAILED: &str = "NetworkReadFailed";
/// Event reason: the NAD back-labels could not be written.
pub const REASON_NAD_LABEL_FAILED: &str = "NetworkLabelFailed";
/// Event reason: the NAD copy of the `static-ipam` set-up could not be built, read, written or
/// deleted.
pub const REASON_AGENT_NETWORK_FAILED: &str = "AgentNetworkFailed";

/// The outcome of planning.
#[derive(Debug)]
pub struct Plan {
    /// The status to write (when it differs from the current one). While `actions` is not
    /// empty, it assumes they succeed; plan again with their [`Done`] before writing it.
    pub status: IPPoolStatus,
    /// What to do, then plan again.
    pub actions: Vec<PoolAction>,
    /// What failed (in `Done`, or while reading).
    pub failures: Vec<Failure>,
    /// The allocator rebuilt from the status (for metrics and the cache API); `None` when the
    /// pool is paused or its status does not rebuild.
    pub ipam: Option<ipam::Pool>,
    /// Orphaned allocations released in `status`.
    pub released: Vec<gc::Release>,
}

/// Plans one reconcile of `pool`, given what `done` says about the actions already carried out
/// in this pass: none is asked for twice.
pub fn plan(
    pool: &IPPool,
    seen: &Observed,
    settings: &AgentSettings,
    done: &Done,
    now: Timestamp,
) -> Plan {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let mut status = pool.status.clone().unwrap_or_default();
    let mut steps = Steps::default();

    reads_and_labels(pool, seen, settings, done, &mut steps);

    if pool.is_paused() {
        pause(
            seen,
            settings,
            done,
            &ns,
            &name,
            &mut status,
            &mut steps,
            now,
        );
        return Plan {
            status,
            actions: steps.actions,
            failures: steps.failures,
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
    let registered = deploy(pool, seen, settings, done, &mut status, &mut steps);
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
            for orphan in &seen.orphans {
                let still = status
                    .ipv4
                    .as_ref()
                    .and_then(|v4| v4.allocated.get(&orphan.ip.to_string()))
                    .is_some_and(|mac| vmdhcp_api::mac::same_mac(mac, &orphan.mac));
                if still
                    && ipam.release(orphan.ip).is_ok()
                    && vmdhcp_api::status::release_allocation(&mut status, orphan.ip)
                {
                    released.push(orphan.clone());
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
    let ready = monitor(seen, settings, done, &status, &ns, &name, now, &mut steps);
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
        actions: steps.actions,
        failures: steps.failures,
        ipam,
        released,
    }
}

/// The NAD back-labels to write, and what failed reading or labelling.
fn reads_and_labels(
    pool: &IPPool,
    seen: &Observed,
    settings: &AgentSettings,
    done: &Done,
    steps: &mut Steps,
) {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let network = pool
        .network()
        .map_or_else(|_| pool.spec.network_name.clone(), |n| n.to_string());
    match (&seen.nad, &done.label_nad) {
        (_, Some(Err(message))) => steps.failed(
            REASON_NAD_LABEL_FAILED,
            format!("label network attachment definition {network}: {message}"),
        ),
        (Some(NadSeen::Unreadable(message)), _) => steps.failed(
            REASON_NAD_READ_FAILED,
            format!("get network attachment definition {network}: {message}"),
        ),
        (_, None) => {
            if let Some(labels) = nad_labels(seen, &ns, &name) {
                steps.actions.push(PoolAction::LabelNad(labels));
            }
        }
        (_, Some(Ok(()))) => {}
    }
    if let Some(message) = &seen.pod_unreadable
        && !settings.no_agent
    {
        steps.failed(
            REASON_AGENT_READ_FAILED,
            format!("get agent pod of ippool {ns}/{name}: {message}"),
        );
    }
}

/// The actions and failures of one plan.
#[derive(Debug, Default)]
struct Steps {
    actions: Vec<PoolAction>,
    failures: Vec<Failure>,
}

impl Steps {
    fn failed(&mut self, reason: &'static str, note: String) {
        self.failures.push(Failure { reason, note });
    }
}

/// A paused pool: its agent goes, every condition says so, its allocations stay. While the
/// agent Pod cannot be deleted, its reference stays (the next pass deletes it by it) and
/// `Stopped` is `False` with the API server's message.
#[allow(
    clippy::too_many_arguments,
    reason = "the pool's identity, the inputs and the outputs of one step; a struct would only rename them"
)]
fn pause(
    seen: &Observed,
    settings: &AgentSettings,
    done: &Done,
    ns: &str,
    name: &str,
    status: &mut IPPoolStatus,
    steps: &mut Steps,
    now: Timestamp,
) {
    let disabled = UpstreamError::IpPoolDisabled {
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
    .to_string();
    let mut stopped = Ok(());
    if let Some(r) = status.agent_pod_ref.take()
        && seen.pod.is_some()
    {
        let namespace = if r.namespace.is_empty() {
            settings.namespace.clone()
        } else {
            r.namespace.clone()
        };
        match &done.delete_pod {
            None => steps.actions.push(PoolAction::DeletePod {
                namespace,
                name: r.name.clone(),
                force: false,
            }),
            Some(Ok(())) => {}
            Some(Err(message)) => {
                steps.failed(
                    REASON_AGENT_DELETE_FAILED,
                    format!("delete agent pod {namespace}/{}: {message}", r.name),
                );
                stopped = Err(message.clone());
                status.agent_pod_ref = Some(r);
            }
        }
    }
    // The NAD copy goes with the agent; a resumed pool writes it again.
    if let Some(AgentNetworkSeen::Found(copy)) = &seen.agent_network
        && agent_pod::is_agent_network(copy, &NamespacedName::new(ns, name))
    {
        match &done.agent_network {
            None => steps.actions.push(PoolAction::DeleteAgentNetwork {
                namespace: copy.namespace().unwrap_or_default(),
                name: copy.name_any(),
            }),
            Some(Ok(())) => {}
            Some(Err(message)) => {
                steps.failed(
                    REASON_AGENT_NETWORK_FAILED,
                    format!(
                        "delete network attachment definition {}/{}: {message}",
                        copy.namespace().unwrap_or_default(),
                        copy.name_any()
                    ),
                );
                if stopped.is_ok() {
                    stopped = Err(message.clone());
                }
            }
        }
    }
    for cond in [COND_REGISTERED, COND_CACHE_READY, COND_AGENT_READY] {
        set_result(&mut status.conditions, cond, Err(&disabled), now);
    }
    match stopped {
        Ok(()) => set(
            &mut status.conditions,
            COND_STOPPED,
            STATUS_TRUE,
            "",
            "",
            now,
        ),
        Err(message) => set_result(&mut status.conditions, COND_STOPPED, Err(&message), now),
    };
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
    done: &Done,
    status: &mut IPPoolStatus,
    steps: &mut Steps,
) -> Result<(), String> {
    if settings.no_agent {
        return Ok(());
    }
    let network = pool.network().map_err(|e| e.to_string())?;
    if let Some(message) = &seen.pod_unreadable {
        return Err(message.clone());
    }
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
        Some(NadSeen::Missing(message) | NadSeen::Unreadable(message)) => {
            return Err(message.clone());
        }
        None => {
            return Err(format!(
                "network attachment definition {network} was not read"
            ));
        }
    };
    // The copy first: the Pod is created (or adopted) in the next round, once it is written.
    if settings.agent.network_setup == NetworkSetup::StaticIpam
        && !agent_network(pool, &network, seen, settings, done, steps)?
    {
        return Ok(());
    }
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
        // Created in this pass, and the status write that recorded it conflicted: the pool
        // read again still names the Pod before it. This one is ours, not a stranger to purge.
        let created = done.create_pod.as_ref().and_then(|c| c.as_ref().ok());
        if created.is_some_and(|c| c.uid().is_some() && c.uid() == pod.uid()) {
            *r = PodReference {
                namespace: settings.namespace.clone(),
                name: pod.name_any(),
                image: settings.image.clone(),
                uid: pod.uid().unwrap_or_default(),
            };
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
    create(
        pool,
        &network,
        cluster_network,
        settings,
        done,
        status,
        steps,
    )
}

/// The pool's server address and prefix length (what `eth1` gets).
fn server_address(pool: &IPPool) -> Result<(std::net::Ipv4Addr, u8), String> {
    let cfg = &pool.spec.ipv4_config;
    let server_ip = cfg
        .server_ip
        .parse()
        .map_err(|_| format!("ippool serverIP {:?} is not an IPv4 address", cfg.server_ip))?;
    let net: ipnet::Ipv4Net = cfg
        .cidr
        .parse()
        .map_err(|_| format!("ippool cidr {:?} is not an IPv4 CIDR", cfg.cidr))?;
    Ok((server_ip, net.prefix_len()))
}

/// The `static-ipam` set-up: the pool's NAD copy with the server address, written before the
/// Pod that attaches it (and again whenever the pool's NAD configuration changes; a running
/// Pod keeps the attachment it started with). A copy that cannot be built, read or written is
/// `Registered`'s error, and no Pod is created without it. `Ok(false)`: it is being written.
fn agent_network(
    pool: &IPPool,
    network: &NamespacedName,
    seen: &Observed,
    settings: &AgentSettings,
    done: &Done,
    steps: &mut Steps,
) -> Result<bool, String> {
    let pool_key = NamespacedName::new(pool.namespace().unwrap_or_default(), pool.name_any());
    let copy = format!(
        "{}/{}",
        settings.namespace,
        agent_pod::agent_network_name(&pool_key)
    );
    match &done.agent_network {
        Some(Ok(())) => return Ok(true),
        Some(Err(message)) => {
            steps.failed(
                REASON_AGENT_NETWORK_FAILED,
                format!("write network attachment definition {copy}: {message}"),
            );
            return Err(message.clone());
        }
        None => {}
    }
    let current = match &seen.agent_network {
        Some(AgentNetworkSeen::Unreadable(message)) => {
            steps.failed(
                REASON_AGENT_NETWORK_FAILED,
                format!("get network attachment definition {copy}: {message}"),
            );
            return Err(message.clone());
        }
        Some(AgentNetworkSeen::Found(current))
            if !agent_pod::is_agent_network(current, &pool_key) =>
        {
            let message = format!(
                "network attachment definition {copy} exists and is not the agent's copy for \
                 ippool {pool_key} (label {}={}, annotation {}={pool_key})",
                vmdhcp_api::consts::LABEL_VM_DHCP_CONTROLLER,
                agent_pod::LABEL_VALUE_AGENT_NETWORK,
                agent_pod::ANNOTATION_AGENT_NETWORK_POOL
            );
            steps.failed(REASON_AGENT_NETWORK_FAILED, message.clone());
            return Err(message);
        }
        Some(AgentNetworkSeen::Found(current)) => Some(current.as_ref()),
        Some(AgentNetworkSeen::Missing) | None => None,
    };
    let (server_ip, prefix_len) = server_address(pool)?;
    let built = seen
        .nad_config
        .as_deref()
        .ok_or_else(|| agent_pod::AgentNetworkError::NotCni {
            nad: network.to_string(),
            why: "no spec.config".to_owned(),
        })
        .and_then(|config| {
            agent_pod::agent_network(
                &pool_key,
                network,
                config,
                server_ip,
                prefix_len,
                &settings.namespace,
            )
        });
    let desired = match built {
        Ok(desired) => desired,
        Err(e) => {
            steps.failed(REASON_AGENT_NETWORK_FAILED, e.to_string());
            return Err(e.to_string());
        }
    };
    let same = current.is_some_and(|c| {
        agent_pod::nad_config(c) == agent_pod::nad_config(&desired)
            && c.labels() == desired.labels()
            && c.annotations() == desired.annotations()
    });
    if !same {
        steps
            .actions
            .push(PoolAction::ApplyAgentNetwork(Box::new(desired)));
    }
    Ok(same)
}

/// The agent Pod to create, or what became of its creation: the reference records the Pod the
/// API server returned; a refusal leaves the reference as it was.
fn create(
    pool: &IPPool,
    network: &NamespacedName,
    cluster_network: &str,
    settings: &AgentSettings,
    done: &Done,
    status: &mut IPPoolStatus,
    steps: &mut Steps,
) -> Result<(), String> {
    let (server_ip, prefix_len) = server_address(pool)?;
    let pool_key = NamespacedName::new(pool.namespace().unwrap_or_default(), pool.name_any());
    let pod_name = vmdhcp_api::agent::agent_pod_name(&pool_key.namespace, &pool_key.name);
    let uid = match &done.create_pod {
        // The Pod as the API server returned it: its UID goes into the reference.
        Some(Ok(created)) => created.uid().unwrap_or_default(),
        // As upstream, the handler's status change is dropped: no reference to a Pod that
        // does not exist, so `MonitorAgent` says the agent is not deployed.
        Some(Err(message)) => {
            steps.failed(
                REASON_AGENT_DEPLOY_FAILED,
                format!(
                    "create agent pod {}/{pod_name}: {message}",
                    settings.namespace
                ),
            );
            status.agent_pod_ref = pool.status.as_ref().and_then(|s| s.agent_pod_ref.clone());
            return Err(message.clone());
        }
        None => String::new(),
    };
    status.agent_pod_ref = Some(PodReference {
        namespace: settings.namespace.clone(),
        name: pod_name,
        image: settings.image.clone(),
        uid,
    });
    if done.create_pod.is_some() {
        return Ok(());
    }
    let pod = agent_pod::build(&AgentPodParams {
        pool: &pool_key,
        nad: network,
        cluster_network,
        server_ip,
        prefix_len,
        namespace: &settings.namespace,
        image: &settings.image,
        service_account: &settings.service_account,
        dry_run: settings.dry_run,
        options: &settings.agent,
    });
    steps.actions.push(PoolAction::CreatePod(Box::new(pod)));
    Ok(())
}

#[allow(
    clippy::too_many_arguments,
    reason = "the pool's identity, the inputs and the outputs of one step; a struct would only rename them"
)]
fn monitor(
    seen: &Observed,
    settings: &AgentSettings,
    done: &Done,
    status: &IPPoolStatus,
    ns: &str,
    name: &str,
    now: Timestamp,
    steps: &mut Steps,
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
    if let Some(message) = &seen.pod_unreadable {
        return Err(message.clone());
    }
    let created = done.create_pod.as_ref().and_then(|c| c.as_ref().ok());
    let Some(pod) = seen.pod.as_ref().or(created) else {
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
        && let Some(why) = agent_pod::node_lost(pod, node, seen.node_lease.as_ref(), now, grace)
    {
        delete(done, steps, pod_namespace, &pod_name, true)?;
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
        delete(done, steps, pod_namespace, &pod_name, false)?;
        return Err(UpstreamError::AgentObsolete { pod: pod_name }.to_string());
    }
    if !agent_pod::is_ready(pod) {
        return Err(UpstreamError::AgentNotReady { pod: pod_name }.to_string());
    }
    Ok(())
}

/// Asks for the agent Pod's deletion unless it was tried; a failed deletion is the
/// condition's error, with the API server's message (upstream's `MonitorAgent` returns it).
fn delete(
    done: &Done,
    steps: &mut Steps,
    namespace: String,
    name: &str,
    force: bool,
) -> Result<(), String> {
    match &done.delete_pod {
        None => {
            steps.actions.push(PoolAction::DeletePod {
                namespace,
                name: name.to_owned(),
                force,
            });
            Ok(())
        }
        Some(Ok(())) => Ok(()),
        Some(Err(message)) => {
            steps.failed(
                REASON_AGENT_DELETE_FAILED,
                format!("delete agent pod {namespace}/{name}: {message}"),
            );
            Err(message.clone())
        }
    }
}

/// Allocations of `pool` whose MAC is in no vmnetcfg NIC on the pool's network, as
/// `(address, MAC as the status spells it)`: the candidates [`gc::decide`] rules on (upstream
/// never collects them, so addresses of force-deleted vmnetcfgs leak). `vmnetcfgs` must be a
/// complete list; paused vmnetcfgs still own their MACs; marks are never candidates.
pub fn orphans(
    pool: &IPPool,
    vmnetcfgs: &[std::sync::Arc<VirtualMachineNetworkConfig>],
) -> Vec<(std::net::Ipv4Addr, String)> {
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
        .collect()
}

#[cfg(test)]
mod tests;
