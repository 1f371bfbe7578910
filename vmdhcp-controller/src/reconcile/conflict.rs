//! Address conflicts: an agent reports that a client declined its address (another host uses
//! it) with a Warning Event on the IPPool ([`vmdhcp_api::conflict`]); this handler takes the
//! address out of use for good and moves the NIC.
//!
//! For each such Event not yet annotated `network.harvesterhci.io/conflict-handled`:
//!
//! 1. the pool's writer replaces `allocated[ip] = mac` by the `CONFLICT` mark and gives the
//!    MAC's NIC another address, in one status write
//!    ([`PoolOp::Conflict`], [`crate::pool_batch::mark_conflict`]); nothing changes when the
//!    pool no longer maps `ip` to `mac` (a report handled before a restart, a VM gone);
//! 2. once the watch cache shows the mark, the NIC's vmnetcfg is reconciled, so that its
//!    status follows (the agent serves the new address as soon as the pool changes);
//! 3. a Warning Event on the vmnetcfg names the old address, the new one and the MAC;
//! 4. the agent's Event is annotated as handled (what was done), last: a restart in between
//!    finds the mark and only finishes the bookkeeping.
//!
//! [`decide`] is the pure part: what an Event asks for, given the caches.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use vmdhcp_api::MacAddr;
use vmdhcp_api::conflict::{Conflict, Reading};
use vmdhcp_api::consts::{
    ACTION_REALLOCATE, ANNOTATION_CONFLICT_HANDLED, MARK_CONFLICT, REASON_ADDRESS_CONFLICT,
};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::network::NamespacedName;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use crate::context::Context;
use crate::error::Error;
use crate::pool_batch::{Marked, NicRequest, OpOutcome, PoolOp};

/// The field selector of the Event watch: only conflict reports (and the controller's own
/// conflict Events on vmnetcfgs, which [`decide`] passes over) reach the controller.
pub const FIELD_SELECTOR: &str = "reason=AddressConflict";

/// How long the handler waits for the watch cache to show the mark before it reconciles the
/// vmnetcfg (a reconcile that reads the pool from before the mark would confirm the old
/// address). Past it the Event is tried again later.
const CACHE_WAIT: Duration = Duration::from_secs(10);

/// The most `CONFLICT` marks a pool takes: past it, reports are annotated and announced on the
/// pool but move nothing (DHCPDECLINE is not authenticated; this bounds what a misbehaving or
/// hostile client can take out of use).
pub const MAX_CONFLICT_MARKS: usize = 16;

/// What the handler works with: the reconcilers' context, and the way to make a vmnetcfg
/// reconcile.
pub struct Conflicts {
    /// Shared with the reconcilers.
    pub ctx: Arc<Context>,
    /// Queues a vmnetcfg reconcile (the vmnetcfg controller's `reconcile_on`).
    pub requeue: UnboundedSender<ObjectRef<VirtualMachineNetworkConfig>>,
}

/// A NIC to move off a declined address: its vmnetcfg and its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The vmnetcfg.
    pub vmnetcfg: NamespacedName,
    /// The NIC, as the vmnetcfg reconciler would ask for its address (without the declined
    /// address as its previous one).
    pub nic: NicRequest,
    /// The address its status records, if any.
    pub recorded: Option<std::net::Ipv4Addr>,
}

/// What to do about one Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: not a conflict report, or handled already.
    Ignore,
    /// Nothing, but say why: a conflict report that cannot be read.
    Unreadable(String),
    /// The caches are still listing: look again shortly.
    WaitForCaches,
    /// The pool is gone: there is nothing to mark; annotate the Event so.
    PoolGone(NamespacedName),
    /// The pool holds [`MAX_CONFLICT_MARKS`] marks already: nothing more is taken out of use
    /// until an operator clears some (a guest that declines every address, or a forged DECLINE
    /// naming a neighbour's MAC, must not drain the pool); say so on the pool.
    TooMany {
        /// The IPPool.
        pool: NamespacedName,
        /// The address and the MAC reported.
        conflict: Conflict,
        /// How many `CONFLICT` marks the pool holds.
        marks: usize,
    },
    /// Mark the conflict in `pool` and move `owner`'s NIC (when a vmnetcfg has that MAC on the
    /// pool's network).
    Mark {
        /// The IPPool.
        pool: NamespacedName,
        /// The address and the MAC.
        conflict: Conflict,
        /// The NIC to move.
        owner: Option<Owner>,
    },
}

/// What `event` asks for, given the pools and vmnetcfgs as watched (`synced`: both caches
/// have listed everything).
pub fn decide(
    event: &Event,
    pools: &[Arc<IPPool>],
    vmnetcfgs: &[Arc<VirtualMachineNetworkConfig>],
    synced: bool,
) -> Step {
    let (pool_ref, conflict) = match vmdhcp_api::conflict::read(event) {
        Reading::Report { pool, conflict } => (pool, conflict),
        Reading::Handled | Reading::NotOurs => return Step::Ignore,
        Reading::Unreadable(why) => return Step::Unreadable(why),
    };
    if !synced {
        return Step::WaitForCaches;
    }
    let Some(pool) = pools.iter().find(|p| {
        p.namespace().as_deref() == Some(pool_ref.namespace.as_str())
            && p.name_any() == pool_ref.name
            && p.metadata.deletion_timestamp.is_none()
    }) else {
        return Step::PoolGone(pool_ref);
    };
    let marks = pool
        .allocated()
        .filter(|(_, value)| *value == MARK_CONFLICT)
        .count();
    if marks >= MAX_CONFLICT_MARKS {
        return Step::TooMany {
            pool: pool_ref,
            conflict,
            marks,
        };
    }
    let owner = pool
        .network()
        .ok()
        .and_then(|network| owner_of(conflict.mac, &network, vmnetcfgs));
    Step::Mark {
        pool: pool_ref,
        conflict,
        owner,
    }
}

/// The NIC with `mac` on `network`, of a vmnetcfg that is not being deleted (a deleted one
/// releases what it holds; nothing is to move). Of several (the webhook refuses a MAC twice on
/// a network, but objects may predate it): the first by namespace and name.
fn owner_of(
    mac: MacAddr,
    network: &NamespacedName,
    vmnetcfgs: &[Arc<VirtualMachineNetworkConfig>],
) -> Option<Owner> {
    let mut found: Vec<Owner> = vmnetcfgs
        .iter()
        .filter(|cfg| cfg.metadata.deletion_timestamp.is_none())
        .flat_map(|cfg| {
            cfg.spec.network_configs.iter().filter_map(move |nic| {
                let nic_mac = nic.mac().ok().filter(|m| *m == mac)?;
                cfg.network_of(nic).ok().filter(|n| n == network)?;
                let recorded = cfg
                    .status
                    .iter()
                    .flat_map(|s| &s.network_configs)
                    .find(|e| {
                        e.network_name == nic.network_name
                            && e.mac_address.parse::<MacAddr>().is_ok_and(|m| m == mac)
                    })
                    .and_then(|e| e.allocated_ip_address.parse().ok());
                Some(Owner {
                    vmnetcfg: NamespacedName::new(
                        cfg.namespace().unwrap_or_default(),
                        cfg.name_any(),
                    ),
                    nic: NicRequest {
                        mac_text: nic.mac_address.clone(),
                        mac: nic_mac,
                        // An unparsable desired address is the vmnetcfg reconciler's to report.
                        desired: nic.ip_address.as_deref().and_then(|s| s.parse().ok()),
                        previous: None,
                    },
                    recorded,
                })
            })
        })
        .collect();
    found.sort_by(|a, b| a.vmnetcfg.cmp(&b.vmnetcfg));
    found.into_iter().next()
}

/// The value of the handled annotation, and the note of the Warning on the vmnetcfg, for what
/// the pool's writer did.
pub fn describe(pool: &NamespacedName, conflict: &Conflict, marked: &Marked) -> (String, String) {
    let Conflict { ip, mac } = conflict;
    let head = format!(
        "address {ip} of mac {mac} is in use by another host (the client declined it): marked \
         {MARK_CONFLICT} in ippool {pool}"
    );
    match marked {
        Marked::NotHeld => (
            format!(
                "ippool {pool} no longer allocates {ip} to mac {mac} (released, moved or marked \
                 before); nothing to do"
            ),
            String::new(),
        ),
        Marked::Marked(None) => (
            format!("marked {MARK_CONFLICT}; no vmnetcfg has mac {mac}"),
            head,
        ),
        Marked::Marked(Some(Ok(moved))) => (
            format!("marked {MARK_CONFLICT}; mac {mac} moved to {}", moved.ip),
            format!("{head}; the NIC moves to {}", moved.ip),
        ),
        Marked::Marked(Some(Err(why))) => (
            format!("marked {MARK_CONFLICT}; mac {mac} got no other address: {why}"),
            format!("{head}; the NIC got no other address: {why}"),
        ),
    }
}

/// Handles one Event (see the module).
///
/// # Errors
/// The pool's status could not be written, or the Event could not be annotated; tried again
/// with the controller's backoff.
pub async fn reconcile(event: Arc<Event>, h: Arc<Conflicts>) -> Result<Action, Error> {
    let ctx = &h.ctx;
    let step = decide(
        &event,
        &ctx.pools.state(),
        &ctx.vmnetcfgs.state(),
        ctx.synced.load(std::sync::atomic::Ordering::Acquire),
    );
    let (pool, conflict, owner) = match step {
        Step::Ignore => return Ok(Action::await_change()),
        Step::Unreadable(why) => {
            tracing::warn!(event = %key(&event), "conflict report left alone: {why}");
            return Ok(Action::await_change());
        }
        Step::WaitForCaches => return Ok(Action::requeue(Duration::from_secs(1))),
        Step::PoolGone(pool) => {
            annotate(
                &event,
                ctx,
                &format!("ippool {pool} not found; nothing to do"),
            )
            .await?;
            return Ok(Action::await_change());
        }
        Step::TooMany {
            pool,
            conflict,
            marks,
        } => {
            refuse(&event, ctx, &pool, &conflict, marks).await?;
            return Ok(Action::await_change());
        }
        Step::Mark {
            pool,
            conflict,
            owner,
        } => (pool, conflict, owner),
    };
    let op = PoolOp::Conflict {
        ip: conflict.ip,
        mac: conflict.mac,
        nic: owner.as_ref().map(|o| o.nic.clone()),
    };
    let by = owner.as_ref().map_or_else(
        || format!("mac {}", conflict.mac),
        |o| o.vmnetcfg.to_string(),
    );
    let marked = match ctx.submit(&pool.namespace, &pool.name, op, &by).await? {
        OpOutcome::Conflict(marked) => marked,
        other => {
            return Err(Error::Config(format!(
                "unexpected outcome of a conflict in ippool {pool}: {other:?}"
            )));
        }
    };
    let (handled, warning) = describe(&pool, &conflict, &marked);
    if let Marked::Marked(_) = marked {
        tracing::warn!(ippool = %pool, ip = %conflict.ip, mac = %conflict.mac, "{handled}");
    }
    if let Some(owner) = &owner {
        // The vmnetcfg's status still names the declined address: its reconcile moves it (also
        // when a handler before a restart marked the conflict but did not get this far).
        let stale = owner.recorded == Some(conflict.ip);
        // Only a mark made now is worth waiting for: when the pool no longer maps the address
        // to the MAC (moved, or the mark already cleared by an operator), the reconcile reads
        // whatever the pool says and nothing would ever show up.
        if matches!(marked, Marked::Marked(_)) && !cache_shows_mark(ctx, &pool, &conflict).await {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        if matches!(marked, Marked::Marked(_)) || stale {
            let _ = h.requeue.unbounded_send(
                ObjectRef::new(&owner.vmnetcfg.name).within(&owner.vmnetcfg.namespace),
            );
        }
        if let Marked::Marked(_) = marked
            && let Some(cfg) = ctx
                .vmnetcfgs
                .get(&ObjectRef::new(&owner.vmnetcfg.name).within(&owner.vmnetcfg.namespace))
        {
            ctx.fresh_event(
                cfg.as_ref(),
                EventType::Warning,
                REASON_ADDRESS_CONFLICT,
                ACTION_REALLOCATE,
                warning,
            )
            .await;
        }
    }
    annotate(&event, ctx, &handled).await?;
    Ok(Action::await_change())
}

/// A report past [`MAX_CONFLICT_MARKS`]: said on the pool and on the report, nothing moved.
async fn refuse(
    event: &Event,
    ctx: &Context,
    pool: &NamespacedName,
    conflict: &Conflict,
    marks: usize,
) -> Result<(), Error> {
    let note = format!(
        "address {} declined by mac {} left in use: ippool {pool} holds {marks} addresses \
         marked {MARK_CONFLICT} already (at most {MAX_CONFLICT_MARKS}); clear the ones that are \
         resolved",
        conflict.ip, conflict.mac
    );
    tracing::warn!("{note}");
    if let Some(p) = ctx
        .pools
        .get(&ObjectRef::new(&pool.name).within(&pool.namespace))
    {
        ctx.fresh_event(
            p.as_ref(),
            EventType::Warning,
            REASON_ADDRESS_CONFLICT,
            ACTION_REALLOCATE,
            note.clone(),
        )
        .await;
    }
    annotate(event, ctx, &note).await
}

/// Waits until the watch cache's copy of `pool` shows the mark (or the pool is gone), at most
/// [`CACHE_WAIT`].
async fn cache_shows_mark(ctx: &Context, pool: &NamespacedName, conflict: &Conflict) -> bool {
    let key = ObjectRef::<IPPool>::new(&pool.name).within(&pool.namespace);
    let ip = conflict.ip.to_string();
    let deadline = tokio::time::Instant::now() + CACHE_WAIT;
    loop {
        let shown = ctx
            .pools
            .get(&key)
            .is_none_or(|p| p.allocated().any(|(k, v)| k == ip && v == MARK_CONFLICT));
        if shown {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Annotates the agent's Event as handled. An Event that expired meanwhile needs nothing.
async fn annotate(event: &Event, ctx: &Context, handled: &str) -> Result<(), Error> {
    let api: Api<Event> =
        Api::namespaced(ctx.client.clone(), &event.namespace().unwrap_or_default());
    let patch =
        serde_json::json!({"metadata": {"annotations": {ANNOTATION_CONFLICT_HANDLED: handled}}});
    match api
        .patch(
            &event.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::error::is_status(&e, 404) => Ok(()),
        Err(e) => Err(Error::kube(format!("annotate event {}", key(event)), e)),
    }
}

fn key(event: &Event) -> String {
    format!(
        "{}/{}",
        event.namespace().unwrap_or_default(),
        event.name_any()
    )
}

/// Retries a failed Event later, later after each failure.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature kube-runtime's Controller::run expects"
)]
pub fn error_policy(event: Arc<Event>, error: &Error, h: Arc<Conflicts>) -> Action {
    // The key the controller's success handler resets.
    let key = ObjectRef::from_obj(event.as_ref()).to_string();
    let delay = h.ctx.backoffs.next(&key);
    tracing::warn!(event = %key, retry_in = ?delay, "conflict report not handled: {error}");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests;
