//! IPPool reconciler: NAD back-labels, agent Pod, conditions, counters, orphan collection;
//! cleanup on deletion (finalizer `wrangler.cattle.io/vm-dhcp-ippool-controller`, the Go
//! controller's, so pools it created are released by us).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use vmdhcp_api::consts::{FINALIZER_IPPOOL, LABEL_IPPOOL_NAME, LABEL_IPPOOL_NAMESPACE};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use crate::context::{Context, WRITE_ATTEMPTS};
use crate::error::{Error, is_status};
use crate::metrics::PoolSeries;
use crate::pool_plan::{self, Done, NadSeen, NodeSeen, Observed, PoolAction};

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
                    if !plan.released.is_empty() {
                        let ips: Vec<String> =
                            plan.released.iter().map(ToString::to_string).collect();
                        ctx.event(
                            &current,
                            EventType::Normal,
                            "OrphansReleased",
                            "Release",
                            format!(
                                "released {} (their MACs belong to no VirtualMachineNetworkConfig)",
                                ips.join(", ")
                            ),
                        )
                        .await;
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
            return Ok(requeue_after(&plan.status));
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

/// Soon while the agent is not ready (its node is not watched), else the periodic resync.
fn requeue_after(status: &vmdhcp_api::ippool::IPPoolStatus) -> Action {
    let ready =
        vmdhcp_api::condition::is_true(&status.conditions, vmdhcp_api::consts::COND_AGENT_READY);
    Action::requeue(if ready {
        RESYNC
    } else {
        Duration::from_secs(30)
    })
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
            Ok(Some(nad)) => NadSeen::Found(nad.labels().clone()),
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
        }
    }
    if ctx.synced.load(std::sync::atomic::Ordering::Acquire)
        && !pool_plan::orphans(pool, &ctx.vmnetcfgs.state()).is_empty()
    {
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
                seen.orphans = pool_plan::orphans(pool, &fresh);
            }
            // Collection waits for the next pass; nothing else depends on it.
            Err(e) => tracing::debug!("cannot list vmnetcfgs to confirm orphans: {e}"),
        }
    }
    seen
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
