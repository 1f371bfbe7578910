//! IPPool reconciler: NAD back-labels, agent Pod, conditions, counters, orphan collection;
//! cleanup on deletion (finalizer `wrangler.cattle.io/vm-dhcp-ippool-controller`, the Go
//! controller's, so pools it created are released by us).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource as _, ResourceExt};
use vmdhcp_api::consts::{FINALIZER_IPPOOL, LABEL_IPPOOL_NAME, LABEL_IPPOOL_NAMESPACE};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use crate::agent_pod::{self, NetworkSetup};
use crate::context::{Context, WRITE_ATTEMPTS};
use crate::error::{Error, is_status};
use crate::gc;
use crate::metrics::Kind;
use crate::metrics::PoolSeries;
use crate::pool_plan::{self, AgentNetworkSeen, Done, NadSeen, NodeSeen, Observed, PoolAction};

/// Namespace of the nodes' Leases (the kubelet's heartbeat).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Event reason: an orphaned allocation was released.
pub const REASON_ORPHAN_RELEASED: &str = "OrphanReleased";

/// Re-run every pool this often: orphan collection and node checks need no event.
pub const RESYNC: Duration = Duration::from_secs(300);

/// The NAD resource (`k8s.cni.cncf.io/v1`), read and written as a dynamic object so that
/// fields this controller does not know survive an update.
pub fn nad_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
        "network-attachment-definitions",
    )
}

/// Reconciles one IPPool.
///
/// # Errors
/// API errors and conflicts that persisted; the controller requeues.
pub async fn reconcile(pool: Arc<IPPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let metrics = ctx.metrics.clone();
    super::measured(Kind::IpPool, &metrics, async move {
        let ns = pool.namespace().unwrap_or_default();
        let api: Api<IPPool> = Api::namespaced(ctx.client.clone(), &ns);
        Box::pin(finalizer(&api, FINALIZER_IPPOOL, pool, |event| async {
            match event {
                Event::Apply(pool) => Box::pin(apply(&pool, &ctx)).await,
                Event::Cleanup(pool) => cleanup(&pool, &ctx).await,
            }
        }))
        .await
        .or_else(super::gone)
    })
    .await
}

async fn apply(pool: &IPPool, ctx: &Context) -> Result<Action, Error> {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let api: Api<IPPool> = Api::namespaced(ctx.client.clone(), &ns);
    let mut current = pool.clone();
    // Kept across conflicts: an action is carried out once per reconcile.
    let mut done = Done::default();
    for _ in 0..WRITE_ATTEMPTS {
        let seen = observe(&current, ctx).await;
        let now = Timestamp::now();
        let mut plan = pool_plan::plan(&current, &seen, &ctx.settings, &done, now);
        // Each round fills a slot of `done` the planner never asks for again: bounded by the
        // number of action kinds.
        for _ in 0..4 {
            if plan.actions.is_empty() {
                break;
            }
            for action in std::mem::take(&mut plan.actions) {
                execute(&current, action, &mut done, ctx).await;
            }
            plan = pool_plan::plan(&current, &seen, &ctx.settings, &done, now);
        }
        match &plan.ipam {
            Some(ipam) => ctx.metrics.set_pool(
                &format!("{ns}/{name}"),
                PoolSeries {
                    cidr: current.spec.ipv4_config.cidr.clone(),
                    network: current.spec.network_name.clone(),
                    used: ipam.used(),
                    available: ipam.available(),
                },
            ),
            None => ctx.metrics.remove_pool(&format!("{ns}/{name}")),
        }
        if current.is_paused() {
            ctx.allocators
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .forget(&ns, &name);
        }
        if current.status.as_ref() != Some(&plan.status) {
            let mut next = current.clone();
            next.status = Some(plan.status.clone());
            match api
                .replace_status(&name, &PostParams::default(), &next)
                .await
            {
                Ok(_) => {
                    for release in &plan.released {
                        orphan_event(&current, release, ctx).await;
                    }
                }
                Err(e) if is_status(&e, 409) => {
                    current = api
                        .get(&name)
                        .await
                        .map_err(|e| Error::kube(format!("get ippool {ns}/{name}"), e))?;
                    continue;
                }
                Err(e) => {
                    return Err(Error::kube(format!("write ippool {ns}/{name} status"), e));
                }
            }
        }
        if plan.failures.is_empty() {
            return Ok(requeue_after(&plan.status, seen.orphan_wait, now));
        }
        // The status says what failed; the Events say it to whoever watches the pool, and the
        // error retries the reconcile with the pool's growing delay.
        for failure in &plan.failures {
            ctx.event(
                &current,
                EventType::Warning,
                failure.reason,
                "Reconcile",
                failure.note.clone(),
            )
            .await;
        }
        return Err(Error::Steps {
            object: format!("ippool {ns}/{name}"),
            failures: plan.failures.into_iter().map(|f| f.note).collect(),
        });
    }
    Err(Error::Contended {
        object: format!("ippool {ns}/{name}"),
        attempts: WRITE_ATTEMPTS,
    })
}

/// Soon while the agent is not ready (its node is not watched), else the periodic resync;
/// sooner when an orphan's grace period ends before (`orphan_wait`).
fn requeue_after(
    status: &vmdhcp_api::ippool::IPPoolStatus,
    orphan_wait: Option<Timestamp>,
    now: Timestamp,
) -> Action {
    let ready =
        vmdhcp_api::condition::is_true(&status.conditions, vmdhcp_api::consts::COND_AGENT_READY);
    let mut after = if ready {
        RESYNC
    } else {
        Duration::from_secs(30)
    };
    if let Some(at) = orphan_wait
        && let Ok(wait) = Duration::try_from(at.duration_since(now))
    {
        // Just past the end of the grace: `decide` releases only after it.
        after = after.min(wait + Duration::from_secs(1));
    }
    Action::requeue(after)
}

/// The Event of one released orphan: on the pool, naming the address, the MAC and the
/// vmnetcfg that held it (its `related` object, with the NIC as field path, so that each
/// release is an Event of its own rather than a repetition of the previous one).
async fn orphan_event(pool: &IPPool, release: &gc::Release, ctx: &Context) {
    let owner = &release.owner;
    let event = kube::runtime::events::Event {
        type_: EventType::Normal,
        reason: REASON_ORPHAN_RELEASED.to_owned(),
        note: Some(format!(
            "released {} of mac {}: vmnetcfg {} (uid {}) has been gone since {}",
            release.ip, release.mac, owner.vmnetcfg, owner.uid, release.gone_since
        )),
        action: "Release".to_owned(),
        secondary: Some(ObjectReference {
            api_version: Some(vmdhcp_api::consts::API_VERSION.to_owned()),
            kind: Some(vmdhcp_api::consts::KIND_VMNETCFG.to_owned()),
            namespace: Some(owner.vmnetcfg.namespace.clone()),
            name: Some(owner.vmnetcfg.name.clone()),
            uid: Some(owner.uid.clone()),
            field_path: Some(format!("spec.networkConfigs{{{}}}", release.mac)),
            resource_version: None,
        }),
    };
    if let Err(e) = ctx.recorder.publish(&event, &pool.object_ref(&())).await {
        tracing::debug!("could not publish event {REASON_ORPHAN_RELEASED}: {e}");
    }
    tracing::info!(
        pool = %format!("{}/{}", pool.namespace().unwrap_or_default(), pool.name_any()),
        ip = %release.ip, mac = release.mac, vmnetcfg = %owner.vmnetcfg,
        "orphaned allocation released"
    );
}

/// Where the pool's agent Pod is: as `status.agentPodRef` records it (an older controller may
/// have used another namespace), else by the name scheme in `--namespace`.
fn agent_pod_of(pool: &IPPool, ctx: &Context) -> (String, String) {
    match pool.status.as_ref().and_then(|s| s.agent_pod_ref.as_ref()) {
        Some(r) => (
            if r.namespace.is_empty() {
                ctx.settings.namespace.clone()
            } else {
                r.namespace.clone()
            },
            r.name.clone(),
        ),
        None => (
            ctx.settings.namespace.clone(),
            vmdhcp_api::agent::agent_pod_name(
                &pool.namespace().unwrap_or_default(),
                &pool.name_any(),
            ),
        ),
    }
}

/// What the plan needs to know. A read that fails is recorded, not returned: it shows in the
/// conditions it concerns and the rest of the status is still written.
async fn observe(pool: &IPPool, ctx: &Context) -> Observed {
    let mut seen = Observed::default();
    if let Ok(network) = pool.network() {
        let nads: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &network.namespace, &nad_resource());
        seen.nad = Some(match nads.get_opt(&network.name).await {
            Ok(Some(nad)) => {
                seen.nad_config = nad
                    .data
                    .get("spec")
                    .and_then(|s| s.get("config"))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned);
                NadSeen::Found(nad.labels().clone())
            }
            Ok(None) => NadSeen::Missing(
                vmdhcp_api::message::UpstreamError::NadNotFound {
                    name: network.name.clone(),
                }
                .to_string(),
            ),
            Err(e) => NadSeen::Unreadable(api_message(&e)),
        });
    }
    if !ctx.settings.no_agent {
        let (pod_namespace, pod_name) = agent_pod_of(pool, ctx);
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod_namespace);
        match pods.get_opt(&pod_name).await {
            Ok(pod) => seen.pod = pod,
            Err(e) => seen.pod_unreadable = Some(api_message(&e)),
        }
        let node_name = seen
            .pod
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.clone());
        if let (Some(node_name), Some(_)) = (node_name, ctx.settings.node_grace) {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            match nodes.get_opt(&node_name).await {
                Ok(Some(node)) => seen.node = NodeSeen::Found(Box::new(node)),
                Ok(None) => seen.node = NodeSeen::Missing,
                // Without permission to read nodes, replacement is simply off.
                Err(e) => tracing::debug!("cannot read node {node_name}: {e}"),
            }
            if matches!(seen.node, NodeSeen::Found(_)) {
                let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), NODE_LEASE_NAMESPACE);
                match leases.get_opt(&node_name).await {
                    Ok(lease) => seen.node_lease = lease,
                    // Unknown: a node that exists is never fenced without its Lease.
                    Err(e) => tracing::debug!("cannot read the lease of node {node_name}: {e}"),
                }
            }
        }
        if ctx.settings.agent.network_setup == NetworkSetup::StaticIpam {
            seen.agent_network = Some(read_agent_network(pool, ctx).await);
        }
    }
    observe_orphans(pool, ctx, &mut seen).await;
    seen
}

/// The pool's NAD copy of the `static-ipam` set-up, as read.
async fn read_agent_network(pool: &IPPool, ctx: &Context) -> AgentNetworkSeen {
    let key = vmdhcp_api::network::NamespacedName::new(
        pool.namespace().unwrap_or_default(),
        pool.name_any(),
    );
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctx.settings.namespace, &nad_resource());
    match api.get_opt(&agent_pod::agent_network_name(&key)).await {
        Ok(Some(copy)) => AgentNetworkSeen::Found(Box::new(copy)),
        Ok(None) => AgentNetworkSeen::Missing,
        Err(e) => AgentNetworkSeen::Unreadable(api_message(&e)),
    }
}

/// Which orphaned allocations to release now ([`gc::decide`]), and when to look again at those
/// whose vmnetcfg is gone but not for long enough. Only allocations whose MAC this process saw
/// in a vmnetcfg are looked at, and only once the caches are complete.
async fn observe_orphans(pool: &IPPool, ctx: &Context, seen: &mut Observed) {
    let Some(grace) = ctx.settings.orphan_grace else {
        return;
    };
    let Ok(network) = pool.network() else {
        return;
    };
    if !ctx.synced.load(std::sync::atomic::Ordering::Acquire) {
        return;
    }
    let remembered = |orphans: Vec<(std::net::Ipv4Addr, String)>| -> Vec<(std::net::Ipv4Addr, String, gc::Owner)> {
        let owners = ctx.owners.lock();
        orphans
            .into_iter()
            .filter_map(|(ip, mac)| {
                let parsed = mac.parse::<vmdhcp_api::MacAddr>().ok()?;
                let owner = owners.owner(&network, &parsed)?.clone();
                Some((ip, mac, owner))
            })
            .collect()
    };
    let cached = remembered(pool_plan::orphans(pool, &ctx.vmnetcfgs.state()));
    let now = Timestamp::now();
    let candidates = if cached.is_empty() {
        Vec::new()
    } else {
        // The cache can lag (a watch that restarts re-lists, and the store swaps the new list
        // in only when it is complete), so a vmnetcfg that just got its address may be missing
        // from it. Confirm against a list read now, after the pool: every vmnetcfg whose
        // allocation this version of the pool holds is in it. The release is then written with
        // this pool's resourceVersion, so a newer allocation makes it a conflict, not a loss.
        let all: Api<VirtualMachineNetworkConfig> = Api::all(ctx.client.clone());
        match all.list(&ListParams::default()).await {
            Ok(listed) => {
                let fresh: Vec<Arc<VirtualMachineNetworkConfig>> =
                    listed.items.into_iter().map(Arc::new).collect();
                remembered(pool_plan::orphans(pool, &fresh))
            }
            // Collection waits for the next pass; nothing else depends on it.
            Err(e) => {
                tracing::debug!("cannot list vmnetcfgs to confirm orphans: {e}");
                Vec::new()
            }
        }
    };
    for (ip, mac, owner) in candidates {
        // The owner's absence is the API server's word, not the cache's.
        let api: Api<VirtualMachineNetworkConfig> =
            Api::namespaced(ctx.client.clone(), &owner.vmnetcfg.namespace);
        let found = match api.get_opt(&owner.vmnetcfg.name).await {
            Ok(None) => gc::Found::Gone,
            Ok(Some(cfg)) if cfg.uid().as_deref() != Some(owner.uid.as_str()) => gc::Found::Gone,
            Ok(Some(_)) => gc::Found::Present,
            Err(e) => {
                tracing::debug!("cannot read vmnetcfg {}: {e}", owner.vmnetcfg);
                gc::Found::Unknown
            }
        };
        let state = ctx.owners.lock().confirm(&owner, found, now);
        let candidate = gc::Candidate {
            ip,
            mac,
            owner: Some(owner),
            state,
        };
        match gc::decide(&candidate, now, Some(grace)) {
            gc::Verdict::Release(release) => seen.orphans.push(release),
            gc::Verdict::Wait { at } => {
                seen.orphan_wait = Some(seen.orphan_wait.map_or(at, |w| w.min(at)));
            }
            gc::Verdict::Keep(why) => {
                tracing::debug!(%ip, vmnetcfg = %candidate.owner.as_ref().map(|o| o.vmnetcfg.to_string()).unwrap_or_default(), "orphan kept: {why:?}");
            }
        }
    }
    // Forget the MACs of this network that hold nothing here and whose vmnetcfg is gone.
    let held: std::collections::HashSet<vmdhcp_api::MacAddr> =
        vmdhcp_api::convert::allocations(pool)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, mac)| mac.parse().ok())
            .collect();
    let cache = &ctx.vmnetcfgs;
    ctx.owners.lock().prune(
        &network,
        |mac| held.contains(mac),
        |owner| {
            cache
                .get(
                    &kube::runtime::reflector::ObjectRef::new(&owner.vmnetcfg.name)
                        .within(&owner.vmnetcfg.namespace),
                )
                .is_some_and(|cfg| cfg.uid().as_deref() == Some(owner.uid.as_str()))
        },
    );
}

/// The API server's own message (what upstream puts in conditions), else the error's text.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Carries out `action`, recording how it went in `done`.
async fn execute(pool: &IPPool, action: PoolAction, done: &mut Done, ctx: &Context) {
    match action {
        PoolAction::LabelNad(labels) => {
            done.label_nad = Some(label_nad(pool, labels, ctx).await);
        }
        PoolAction::ApplyAgentNetwork(copy) => {
            done.agent_network = Some(apply_agent_network(&copy, ctx).await);
        }
        PoolAction::DeleteAgentNetwork { namespace, name } => {
            done.agent_network = Some(delete_agent_network(&namespace, &name, ctx).await);
        }
        PoolAction::CreatePod(pod) => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
            let name = pod.name_any();
            done.create_pod = Some(match pods.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    ctx.event(
                        pool,
                        EventType::Normal,
                        "AgentCreated",
                        "Deploy",
                        format!("agent pod {name} created with image {}", ctx.settings.image),
                    )
                    .await;
                    Ok(created)
                }
                // Created by an earlier pass whose status write was lost: adopt it.
                Err(e) if is_status(&e, 409) => pods.get(&name).await.map_err(|e| api_message(&e)),
                // Logged with the reconcile's error.
                Err(e) => Err(api_message(&e)),
            });
        }
        PoolAction::DeletePod {
            namespace,
            name,
            force,
        } => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
            let params = if force {
                DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                }
            } else {
                DeleteParams::default()
            };
            done.delete_pod = Some(match pods.delete(&name, &params).await {
                Ok(_) => {
                    ctx.event(
                        pool,
                        EventType::Normal,
                        "AgentDeleted",
                        "Deploy",
                        format!(
                            "agent pod {name} deleted{}",
                            if force { " (its node is lost)" } else { "" }
                        ),
                    )
                    .await;
                    Ok(())
                }
                Err(e) if is_status(&e, 404) => Ok(()),
                Err(e) => Err(api_message(&e)),
            });
        }
    }
}

/// Creates the NAD copy, or updates the one there to `copy`'s labels, annotations and spec.
async fn apply_agent_network(copy: &DynamicObject, ctx: &Context) -> Result<(), String> {
    let namespace = copy.namespace().unwrap_or_default();
    let name = copy.name_any();
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &nad_resource());
    let mut last = String::new();
    for _ in 0..WRITE_ATTEMPTS {
        let Some(mut current) = api.get_opt(&name).await.map_err(|e| api_message(&e))? else {
            match api.create(&PostParams::default(), copy).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 409) => {
                    last = api_message(&e);
                    continue;
                }
                Err(e) => return Err(api_message(&e)),
            }
        };
        let pool = copy
            .annotations()
            .get(agent_pod::ANNOTATION_AGENT_NETWORK_POOL)
            .and_then(|p| p.split_once('/'))
            .map_or_else(
                || vmdhcp_api::network::NamespacedName::new("", ""),
                |(ns, name)| vmdhcp_api::network::NamespacedName::new(ns, name),
            );
        if !agent_pod::is_agent_network(&current, &pool) {
            return Err(format!(
                "{namespace}/{name} exists and is not the agent's copy for ippool {pool}"
            ));
        }
        current.metadata.labels.clone_from(&copy.metadata.labels);
        current
            .metadata
            .annotations
            .clone_from(&copy.metadata.annotations);
        current.data["spec"] = copy.data["spec"].clone();
        match api.replace(&name, &PostParams::default(), &current).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 409) => last = api_message(&e),
            Err(e) => return Err(api_message(&e)),
        }
    }
    Err(last)
}

/// Deletes the NAD copy `namespace/name` (gone already counts as deleted).
async fn delete_agent_network(namespace: &str, name: &str, ctx: &Context) -> Result<(), String> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &nad_resource());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(api_message(&e)),
    }
}

/// Merges `labels` into the NAD as it is when written, re-reading it when someone else wrote
/// it in between.
async fn label_nad(
    pool: &IPPool,
    labels: BTreeMap<String, String>,
    ctx: &Context,
) -> Result<(), String> {
    let Ok(network) = pool.network() else {
        return Ok(());
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &network.namespace, &nad_resource());
    let mut last = String::new();
    for _ in 0..WRITE_ATTEMPTS {
        let Some(mut nad) = api
            .get_opt(&network.name)
            .await
            .map_err(|e| api_message(&e))?
        else {
            return Ok(());
        };
        nad.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(labels.clone());
        match api
            .replace(&network.name, &PostParams::default(), &nad)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 409) => last = api_message(&e),
            Err(e) => return Err(api_message(&e)),
        }
    }
    Err(last)
}

async fn cleanup(pool: &IPPool, ctx: &Context) -> Result<Action, Error> {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let (pod_namespace, pod_name) = agent_pod_of(pool, ctx);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod_namespace);
    match pods.delete(&pod_name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(pool = %format!("{ns}/{name}"), pod = pod_name, "agent pod deleted");
        }
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(Error::kube(format!("delete agent pod {pod_name}"), e)),
    }
    // The NAD copy of static-ipam, when it is ours. Any failure keeps the finalizer.
    if ctx.settings.agent.network_setup == NetworkSetup::StaticIpam {
        let key = vmdhcp_api::network::NamespacedName::new(ns.clone(), name.clone());
        let copy = agent_pod::agent_network_name(&key);
        let failed = |message: String| Error::Steps {
            object: format!("ippool {ns}/{name}"),
            failures: vec![format!(
                "delete network attachment definition {}/{copy}: {message}",
                ctx.settings.namespace
            )],
        };
        match read_agent_network(pool, ctx).await {
            AgentNetworkSeen::Found(found) if agent_pod::is_agent_network(&found, &key) => {
                delete_agent_network(&ctx.settings.namespace, &copy, ctx)
                    .await
                    .map_err(failed)?;
            }
            AgentNetworkSeen::Found(_) | AgentNetworkSeen::Missing => {}
            AgentNetworkSeen::Unreadable(message) => return Err(failed(message)),
        }
    }
    // The NAD's back-reference labels go too (upstream left them), when they still point here.
    if let Ok(network) = pool.network() {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &network.namespace, &nad_resource());
        if let Some(mut nad) = api
            .get_opt(&network.name)
            .await
            .map_err(|e| Error::kube(format!("get network attachment definition {network}"), e))?
        {
            let labels = nad.metadata.labels.get_or_insert_with(BTreeMap::new);
            if labels.get(LABEL_IPPOOL_NAMESPACE) == Some(&ns)
                && labels.get(LABEL_IPPOOL_NAME) == Some(&name)
            {
                labels.remove(LABEL_IPPOOL_NAMESPACE);
                labels.remove(LABEL_IPPOOL_NAME);
                // Any error, a conflict included, keeps the finalizer: the finalizer helper
                // removes it on `Ok`, and the labels would then never be removed.
                api.replace(&network.name, &PostParams::default(), &nad)
                    .await
                    .map_err(|e| {
                        Error::kube(
                            format!("unlabel network attachment definition {network}"),
                            e,
                        )
                    })?;
            }
        }
    }
    ctx.allocators
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .forget(&ns, &name);
    ctx.writers.forget(&ns, &name);
    ctx.metrics.remove_pool(&format!("{ns}/{name}"));
    Ok(Action::await_change())
}
