//! vmnetcfg reconciler: releases stale addresses, allocates one per NIC (each NIC on its
//! own), writes the status; releases everything on pause and on deletion (finalizer
//! `wrangler.cattle.io/vm-dhcp-vmnetcfg-controller`).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use vmdhcp_api::MacAddr;
use vmdhcp_api::consts::{COND_CACHE_READY, FINALIZER_VMNETCFG};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::network::NamespacedName;
use vmdhcp_api::vmnetcfg::{NetworkConfig, NetworkConfigStatus, VirtualMachineNetworkConfig};

use crate::context::Context;
use crate::error::{Error, PoolWriteFailure};
use crate::metrics::Kind;
use crate::netcfg_plan::{self, Allocation, NicOutcome, NicSeen, PoolSeen};
use crate::pool_batch::PoolOp;

/// Reconciles one vmnetcfg.
///
/// # Errors
/// API errors; the controller requeues.
pub async fn reconcile(
    cfg: Arc<VirtualMachineNetworkConfig>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let metrics = ctx.metrics.clone();
    super::measured(Kind::VmNetCfg, &metrics, async move {
        let ns = cfg.namespace().unwrap_or_default();
        let api: Api<VirtualMachineNetworkConfig> = Api::namespaced(ctx.client.clone(), &ns);
        finalizer(&api, FINALIZER_VMNETCFG, cfg, |event| async {
            match event {
                Event::Apply(cfg) => apply(&cfg, &ctx).await,
                Event::Cleanup(cfg) => cleanup(&cfg, &ctx).await,
            }
        })
        .await
        .or_else(super::gone)
    })
    .await
}

fn key(cfg: &VirtualMachineNetworkConfig) -> String {
    format!("{}/{}", cfg.namespace().unwrap_or_default(), cfg.name_any())
}

/// Until both caches have listed everything, a pool missing from the cache may just not be
/// listed yet: deciding then would drop entries and write statuses a restart must not change.
fn wait_for_caches(ctx: &Context) -> Option<Action> {
    (!ctx.synced.load(std::sync::atomic::Ordering::Acquire))
        .then(|| Action::requeue(Duration::from_secs(1)))
}

async fn apply(cfg: &VirtualMachineNetworkConfig, ctx: &Arc<Context>) -> Result<Action, Error> {
    // Orphan collection releases only MACs seen in a vmnetcfg (crate::gc).
    if ctx.settings.orphan_grace.is_some() {
        ctx.owners.lock().record(cfg);
    }
    if let Some(wait) = wait_for_caches(ctx) {
        return Ok(wait);
    }
    let now = Timestamp::now();
    if cfg.is_paused() {
        release_all(cfg, &held(cfg, ctx), ctx).await?;
        ctx.metrics.set_nics(&key(cfg), Vec::new());
        write_status(cfg, netcfg_plan::paused(cfg, now), ctx).await?;
        return Ok(Action::await_change());
    }

    // Sync first: stale addresses go back before new ones are taken.
    let stale = netcfg_plan::stale(cfg);
    release_all(cfg, &stale, ctx).await?;
    let mut synced = cfg.clone();
    if let Some(status) = synced.status.as_mut() {
        status.network_configs.retain(|e| !stale.contains(e));
    }

    // The NICs wait for their pools' writers together: NICs of one VM on one pool go into
    // one batch.
    let outcomes = futures::future::join_all(
        cfg.spec
            .network_configs
            .iter()
            .map(|nic| nic_outcome(&synced, nic, ctx)),
    )
    .await;
    for (nic, outcome) in cfg.spec.network_configs.iter().zip(&outcomes) {
        if *outcome == NicOutcome::Unmanaged {
            tracing::debug!(
                vmnetcfg = key(cfg),
                network = nic.network_name,
                "no IPPool serves this network; NIC left alone"
            );
        }
    }
    let pass = netcfg_plan::finish(cfg, &synced, &outcomes, now);
    ctx.metrics.set_nics(&key(cfg), pass.series);
    write_status(cfg, pass.status, ctx).await?;
    if let Some(note) = pass.warning {
        ctx.event(
            cfg,
            EventType::Warning,
            "AllocationFailed",
            "Allocate",
            note,
        )
        .await;
    }
    let retry_key = format!("nics:{}", key(cfg));
    Ok(if pass.retry {
        Action::requeue(ctx.backoffs.next(&retry_key))
    } else {
        ctx.backoffs.reset(&retry_key);
        Action::await_change()
    })
}

/// The pool serving `network`: the IPPool whose `networkName` resolves to it. Several (the
/// webhook refuses that, but objects may predate it): the oldest, as the one that was there
/// first.
fn pool_for(network: &NamespacedName, ctx: &Context) -> Option<Arc<IPPool>> {
    ctx.pools
        .state()
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none() && p.network().is_ok_and(|n| n == *network)
        })
        .min_by_key(|p| {
            (
                p.metadata.creation_timestamp.clone().map(|t| t.0),
                p.name_any(),
            )
        })
}

/// One NIC: what its plan needs observed, its plan, and the allocation the plan may ask for.
async fn nic_outcome(
    cfg: &VirtualMachineNetworkConfig,
    nic: &NetworkConfig,
    ctx: &Arc<Context>,
) -> NicOutcome {
    let seen = observe_nic(cfg, nic, ctx).await;
    match netcfg_plan::plan_nic(cfg, nic, &seen).into_outcome(nic) {
        Ok(outcome) => outcome,
        Err(Allocation {
            namespace,
            name,
            request,
        }) => {
            let answer = ctx
                .submit(&namespace, &name, PoolOp::Allocate(request), &key(cfg))
                .await;
            netcfg_plan::allocated(nic, answer)
        }
    }
}

/// The pool serving `nic`'s network, whether it is ready, and — for a NIC whose status
/// records an address — the address the pool as watched holds for its MAC. Nothing is read
/// for a NIC whose network or MAC does not parse.
async fn observe_nic(
    cfg: &VirtualMachineNetworkConfig,
    nic: &NetworkConfig,
    ctx: &Context,
) -> NicSeen {
    let Ok((network, mac)) = netcfg_plan::nic_target(cfg, nic) else {
        return NicSeen::default();
    };
    let Some(pool) = pool_for(&network, ctx) else {
        return NicSeen::default();
    };
    let ready = ready(&pool, ctx).await;
    let held = if ready && netcfg_plan::recorded(cfg, nic, &mac).is_some() {
        ctx.held_address(&pool, &mac)
    } else {
        None
    };
    NicSeen {
        pool: Some(PoolSeen {
            namespace: pool.namespace().unwrap_or_default(),
            name: pool.name_any(),
            ready,
            held,
        }),
    }
}

/// Whether `pool` serves allocations: not paused, `CacheReady`. The pool's change that woke
/// this reconcile comes from another watch than the cache it was read from, which can still
/// hold the pool from before it became ready: the API server is asked before the answer is no
/// (and the NIC waits a retry delay for nothing).
async fn ready(pool: &IPPool, ctx: &Context) -> bool {
    let serves = |p: &IPPool| {
        !p.is_paused() && vmdhcp_api::condition::is_true(p.conditions(), COND_CACHE_READY)
    };
    if serves(pool) {
        return true;
    }
    Api::<IPPool>::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default())
        .get_opt(&pool.name_any())
        .await
        .ok()
        .flatten()
        .is_some_and(|fresh| serves(&fresh))
}

/// Releases `entries`' addresses in their pools (only where the pool still records them for
/// their MAC).
async fn release_all(
    cfg: &VirtualMachineNetworkConfig,
    entries: &[NetworkConfigStatus],
    ctx: &Arc<Context>,
) -> Result<(), Error> {
    let ns = cfg.namespace().unwrap_or_default();
    for entry in entries {
        let (Ok(ip), Ok(mac)) = (
            entry.allocated_ip_address.parse::<Ipv4Addr>(),
            entry.mac_address.parse::<MacAddr>(),
        ) else {
            continue;
        };
        let Ok(network) = vmdhcp_api::network::resolve_network_name(&entry.network_name, &ns)
        else {
            continue;
        };
        let Some(pool) = pool_for(&network, ctx) else {
            continue;
        };
        let (pns, pname) = (pool.namespace().unwrap_or_default(), pool.name_any());
        // The pool's writer tells what it released, per batch, on the pool.
        match ctx
            .submit(&pns, &pname, PoolOp::Release { ip, mac }, &key(cfg))
            .await
        {
            Ok(_)
            | Err(Error::PoolWrite {
                failure: PoolWriteFailure::Gone(_),
                ..
            }) => {}
            // The pool's status does not rebuild: release the entry alone.
            Err(Error::PoolWrite {
                failure: PoolWriteFailure::Unbuildable(_),
                ..
            }) => {
                if ctx.release_unchecked(&pns, &pname, ip, &mac).await? {
                    ctx.event(
                        cfg,
                        EventType::Normal,
                        "Released",
                        "Release",
                        format!(
                            "{ip} of mac {} released to ippool {pns}/{pname}",
                            entry.mac_address
                        ),
                    )
                    .await;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn write_status(
    cfg: &VirtualMachineNetworkConfig,
    status: vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfigStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if cfg.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<VirtualMachineNetworkConfig> =
        Api::namespaced(ctx.client.clone(), &cfg.namespace().unwrap_or_default());
    let mut next = cfg.clone();
    next.status = Some(status);
    // A batch hands hundreds of NICs their addresses at once: their status writes queue here.
    let _permit = ctx.writers.status_writes.acquire().await;
    // A conflict (the spec changed meanwhile) fails the reconcile; the change triggers another.
    api.replace_status(&cfg.name_any(), &PostParams::default(), &next)
        .await
        .map(|_| ())
        .map_err(|e| Error::kube(format!("write vmnetcfg {} status", key(cfg)), e))
}

/// Everything `cfg` holds: its status entries, and the addresses its spec MACs hold in their
/// pools (an allocation written to a pool just before the vmnetcfg's status write failed).
fn held(cfg: &VirtualMachineNetworkConfig, ctx: &Context) -> Vec<NetworkConfigStatus> {
    let mut entries = cfg
        .status
        .as_ref()
        .map(|s| s.network_configs.clone())
        .unwrap_or_default();
    for nic in &cfg.spec.network_configs {
        if let Ok(network) = cfg.network_of(nic)
            && let Some(pool) = pool_for(&network, ctx)
        {
            for (ip, mac) in vmdhcp_api::convert::allocations(&pool).unwrap_or_default() {
                if vmdhcp_api::mac::same_mac(&mac, &nic.mac_address) {
                    entries.push(NetworkConfigStatus {
                        allocated_ip_address: ip.to_string(),
                        mac_address: mac,
                        network_name: nic.network_name.clone(),
                        state: String::new(),
                    });
                }
            }
        }
    }
    entries
}

async fn cleanup(cfg: &VirtualMachineNetworkConfig, ctx: &Arc<Context>) -> Result<Action, Error> {
    // An error, not a requeue: the finalizer helper removes the finalizer on `Ok`.
    if wait_for_caches(ctx).is_some() {
        return Err(Error::CachesNotSynced);
    }
    let entries = held(cfg, ctx);
    release_all(cfg, &entries, ctx).await?;
    ctx.metrics.set_nics(&key(cfg), Vec::new());
    Ok(Action::await_change())
}
