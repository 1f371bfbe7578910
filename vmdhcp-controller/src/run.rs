//! Wiring: HTTP on every replica; leader election; on leadership the CRDs and the three
//! controllers (IPPool, VirtualMachine, vmnetcfg) sharing one [`Context`], and the
//! address-conflict handler ([`reconcile::conflict`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vmdhcp_api::consts::{
    LABEL_IPPOOL_NAME, LABEL_IPPOOL_NAMESPACE, LABEL_VALUE_AGENT, LABEL_VM_DHCP_CONTROLLER,
    LEASE_NAME, LEASE_NAMESPACE,
};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use crate::cli::Args;
use crate::context::Context;
use crate::error::Error;
use crate::http::{self, Readiness};
use crate::kubevirt::VirtualMachine;
use crate::metrics::Registry;
use crate::netcfg_plan::{PoolGate, on_network_of};
use crate::pool_plan::AgentSettings;
use crate::reconcile::{self, error_policy};
use crate::{crds, leader};

/// The binary: runs until SIGTERM/SIGINT, or until this replica loses the lease.
///
/// # Errors
/// Configuration, the HTTP port, or a lost lease.
pub async fn main(args: Args) -> Result<(), Error> {
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            vmdhcp_api::binary::shutdown_signal().await;
            tracing::info!("shutting down");
            stop.cancel();
        });
    }
    run(args, stop).await
}

/// Runs the controller the flags describe until `stop` is cancelled, or until this replica
/// loses the lease.
///
/// # Errors
/// Configuration, the HTTP port, or a lost lease.
pub async fn run(args: Args, stop: CancellationToken) -> Result<(), Error> {
    let client = vmdhcp_api::binary::kube_client(args.kubeconfig.as_deref(), None)
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    run_with_client(client, args, stop).await
}

/// [`run`] with a client the caller built (tests, other programs): `args.kubeconfig` is not
/// read.
///
/// # Errors
/// The HTTP port, leader-election settings, or a lost lease.
pub async fn run_with_client(
    client: Client,
    args: Args,
    stop: CancellationToken,
) -> Result<(), Error> {
    let metrics = Arc::new(Registry::default());
    let (ready_tx, ready_rx) = watch::channel(if args.no_leader_election {
        Readiness::Syncing
    } else {
        Readiness::Standby
    });
    let (pools_tx, pools_rx) = watch::channel(None);
    let router = http::router(http::Endpoints {
        readiness: ready_rx,
        metrics: metrics.clone(),
        pools: pools_rx,
        cache_dump: args.enable_cache_dump_api,
    });
    let server = tokio::spawn(http::bind(args.metrics_bind, router, stop.clone()).await?);

    let result = if args.no_leader_election {
        lead(client, &args, metrics, ready_tx, pools_tx, stop.clone()).await
    } else {
        let timing = args.leader_timing().map_err(Error::Config)?;
        let me = args.leader_identity();
        tracing::info!(identity = me, lease = %format!("{LEASE_NAMESPACE}/{LEASE_NAME}"), "waiting for leadership");
        let (leading_tx, mut leading_rx) = watch::channel(false);
        let election = leader::run(
            Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
            LEASE_NAME,
            &me,
            timing,
            leading_tx,
            stop.clone(),
        );
        tokio::pin!(election);
        let leading = async {
            while !*leading_rx.borrow_and_update() {
                if leading_rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            ended = &mut election => ended,
            () = leading => {
                let reconcilers = lead(client, &args, metrics, ready_tx, pools_tx, stop.clone());
                tokio::select! {
                    // Losing the lease stops reconciling at once: the controllers are dropped.
                    ended = &mut election => { stop.cancel(); ended }
                    ran = reconcilers => { stop.cancel(); let _ = election.await; ran }
                }
            }
        }
    };
    stop.cancel();
    let _ = server.await;
    result
}

/// Leads: applies the CRDs and runs the controllers until `stop`.
async fn lead(
    client: Client,
    args: &Args,
    metrics: Arc<Registry>,
    ready: watch::Sender<Readiness>,
    pools_tx: watch::Sender<Option<kube::runtime::reflector::Store<IPPool>>>,
    stop: CancellationToken,
) -> Result<(), Error> {
    ready.send_replace(Readiness::Syncing);
    if let Err(e) = crds::apply(&client).await {
        // The chart ships the CRDs; without the permission to apply them, run with what is there.
        tracing::warn!("{e}; continuing with the installed CRDs");
    }
    let (listed, mut listed_rx) = watch::channel(0u8);
    let (pool_ctrl, cfg_ctrl) = controllers(&client, &args.namespace, &stop, &listed);
    let pools = pool_ctrl.store();
    let vmnetcfgs = cfg_ctrl.store();
    pools_tx.send_replace(Some(pools.clone()));
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: AgentSettings {
            no_agent: args.no_agent,
            dry_run: args.no_dhcp,
            image: args.image.to_string(),
            namespace: args.namespace.clone(),
            service_account: args.service_account_name.clone(),
            node_grace: (args.agent_node_grace_secs > 0)
                .then(|| Duration::from_secs(args.agent_node_grace_secs)),
            agent: args.agent_options(),
            orphan_grace: (args.orphan_grace_secs > 0)
                .then(|| Duration::from_secs(args.orphan_grace_secs)),
        },
        pools: pools.clone(),
        vmnetcfgs: vmnetcfgs.clone(),
        allocators: Mutex::default(),
        writers: crate::context::PoolWriters::new(args.batch(), reporter(args), stop.clone()),
        backoffs: crate::context::Backoffs::default(),
        recorder: Recorder::new(client.clone(), reporter(args)),
        metrics,
        synced: std::sync::atomic::AtomicBool::new(false),
        owners: crate::gc::Memory::default(),
    });
    {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if listed_rx
                .wait_for(|v| *v == LISTED_POOLS | LISTED_VMNETCFGS)
                .await
                .is_ok()
            {
                tracing::info!("caches synced");
                ctx.synced.store(true, std::sync::atomic::Ordering::Release);
                ready.send_replace(Readiness::Synced);
            }
        });
    }
    let log_ctx = ctx.clone();
    let pools_run = pool_ctrl
        .run(reconcile::ippool::reconcile, error_policy, ctx.clone())
        .for_each(|r| log_result(&log_ctx, "IPPool", r));
    // The conflict handler makes the vmnetcfg of a NIC it moved reconcile.
    let (requeue, requeued) = futures::channel::mpsc::unbounded();
    let cfgs_run = cfg_ctrl
        .reconcile_on(requeued)
        .run(reconcile::vmnetcfg::reconcile, error_policy, ctx.clone())
        .for_each(|r| log_result(&log_ctx, "VirtualMachineNetworkConfig", r));
    // Boxed: the futures of four controllers side by side make `run`'s a large one.
    let conflicts_run = Box::pin(conflict_controller(&client, &stop).run(
        reconcile::conflict::reconcile,
        reconcile::conflict::error_policy,
        Arc::new(reconcile::conflict::Conflicts {
            ctx: ctx.clone(),
            requeue,
        }),
    ))
    .for_each(|r| log_result(&log_ctx, "Event", r));
    let cfgs_run = async { futures::join!(cfgs_run, conflicts_run) };
    let vms: Api<VirtualMachine> = Api::all(client.clone());
    // Only a cluster without KubeVirt turns the VM reconciler off; any other error (a
    // timeout, a 503 while the API server starts) leaves it to the watcher's backoff.
    let vm_check = vms.list(&ListParams::default().limit(1)).await;
    if let Some(e) = vm_check
        .as_ref()
        .err()
        .filter(|e| crate::error::is_status(e, 404))
    {
        tracing::warn!(
            "kubevirt.io/v1 VirtualMachines are not served ({e}); the VM reconciler is off, vmnetcfgs are served as they are"
        );
        futures::join!(pools_run, cfgs_run);
    } else {
        let vm_run = listing_controller(vms, listed.clone(), 0)
            .graceful_shutdown_on(stop.clone().cancelled_owned())
            .run(reconcile::vm::reconcile, error_policy, ctx)
            .for_each(|r| log_result(&log_ctx, "VirtualMachine", r));
        futures::join!(pools_run, cfgs_run, vm_run);
    }
    Ok(())
}

/// Who reports this process's Events.
fn reporter(args: &Args) -> Reporter {
    Reporter {
        controller: "vm-dhcp-controller".into(),
        instance: Some(args.leader_identity()),
    }
}

fn log_result<T: std::fmt::Display, A, E: std::fmt::Display>(
    ctx: &Context,
    kind: &'static str,
    result: Result<(T, A), E>,
) -> std::future::Ready<()> {
    match result {
        Ok((obj, _)) => {
            let key = obj.to_string();
            ctx.backoffs.reset(&key);
            tracing::debug!(kind, object = %key, "reconciled");
        }
        Err(e) => tracing::debug!(kind, "{e}"),
    }
    std::future::ready(())
}

/// A `410 Gone` passes without a backoff at most this often.
const GONE_WITHOUT_BACKOFF: Duration = Duration::from_secs(10);

/// `watcher(api, config)`, except that a `410 Gone` is not handed on as an error. The watcher
/// lists again on its own after one; the error would only make the controller's backoff
/// sleep first. A restarted API server answers every resumed watch with it, so without this a
/// VM created right after an outage waited for two backoffs (reconnect, then relist) instead
/// of one. At most one per [`GONE_WITHOUT_BACKOFF`] is swallowed: a server that keeps
/// answering 410 is backed off from like any failing one.
fn watch_objects<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    relist_at_once(watcher(api, config))
}

/// The `410 Gone` filter of [`watch_objects`], over any watch stream.
fn relist_at_once<K, S>(stream: S) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut last: Option<tokio::time::Instant> = None;
    stream.filter(move |event| {
        let gone = matches!(event, Err(e) if vmdhcp_api::runtime::is_expired(e));
        let swallow = gone && last.is_none_or(|at| at.elapsed() >= GONE_WITHOUT_BACKOFF);
        if swallow {
            last = Some(tokio::time::Instant::now());
            tracing::debug!("watch expired (410 Gone); listing again at once");
        }
        std::future::ready(!swallow)
    })
}

/// Bit of the `listed` channel set when the IPPool watch completed a list.
const LISTED_POOLS: u8 = 1;
/// Bit of the `listed` channel set when the vmnetcfg watch completed a list.
const LISTED_VMNETCFGS: u8 = 2;

/// A controller over `api` like `Controller::new`, with [`watch_objects`] and [`vmdhcp_api::runtime::watch_backoff`], whose
/// watch also sets `bit` in `listed` when a list completes. (`Store::wait_until_ready` cannot
/// tell us: kube-runtime wakes only the last of several waiters, and the controller's own
/// runner is one of them.)
fn listing_controller<K>(api: Api<K>, listed: watch::Sender<u8>, bit: u8) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let trigger = kube::runtime::reflector(writer, watch_objects(api, watcher::Config::default()))
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                listed.send_modify(|v| *v |= bit);
            }
        })
        .applied_objects();
    // kube-runtime applies a controller's trigger backoff to all its watches together, and its
    // default grows to 30 s: after an API server outage a VM created right after the restart
    // would wait that long to be seen.
    Controller::for_stream(trigger, reader).trigger_backoff(vmdhcp_api::runtime::watch_backoff())
}

/// The IPPool controller (also woken by its agent Pods) and the vmnetcfg controller (also
/// woken when a pool on their network appears, goes, pauses, resumes or becomes ready).
fn controllers(
    client: &Client,
    agent_namespace: &str,
    stop: &CancellationToken,
    listed: &watch::Sender<u8>,
) -> (Controller<IPPool>, Controller<VirtualMachineNetworkConfig>) {
    let agents = watcher::Config::default()
        .labels(&format!("{LABEL_VM_DHCP_CONTROLLER}={LABEL_VALUE_AGENT}"));
    let pool_ctrl = listing_controller(
        Api::<IPPool>::all(client.clone()),
        listed.clone(),
        LISTED_POOLS,
    )
    .watches_stream(
        watch_objects(
            Api::<Pod>::namespaced(client.clone(), agent_namespace),
            agents,
        )
        .touched_objects(),
        |pod: Pod| {
            let labels = pod.labels();
            match (
                labels.get(LABEL_IPPOOL_NAMESPACE),
                labels.get(LABEL_IPPOOL_NAME),
            ) {
                (Some(ns), Some(name)) => Some(ObjectRef::<IPPool>::new(name).within(ns)),
                _ => None,
            }
        },
    )
    .graceful_shutdown_on(stop.clone().cancelled_owned());
    let cfg_ctrl = listing_controller(
        Api::<VirtualMachineNetworkConfig>::all(client.clone()),
        listed.clone(),
        LISTED_VMNETCFGS,
    );
    let vmnetcfgs = cfg_ctrl.store();
    // A VM can exist before its pool, and a pool can pause, resume or become ready: the
    // vmnetcfgs on its network must look again then (not on each of its allocations).
    let gates: Mutex<HashMap<(String, String), PoolGate>> = Mutex::default();
    let on_network = vmnetcfgs.clone();
    let cfg_ctrl = cfg_ctrl
        .watches_stream(
            watch_objects(
                Api::<IPPool>::all(client.clone()),
                watcher::Config::default(),
            )
            .touched_objects(),
            move |pool: IPPool| {
                let key = (pool.namespace().unwrap_or_default(), pool.name_any());
                let gate = PoolGate::of(&pool);
                let changed = gates
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key, gate.clone())
                    != Some(gate);
                if changed {
                    on_network_of(&pool, &on_network.state())
                } else {
                    Vec::new()
                }
            },
        )
        .graceful_shutdown_on(stop.clone().cancelled_owned());
    (pool_ctrl, cfg_ctrl)
}

/// The address-conflict handler's controller: agents' `AddressConflict` Events in every
/// namespace (an agent posts them in its pool's namespace).
fn conflict_controller(
    client: &Client,
    stop: &CancellationToken,
) -> Controller<k8s_openapi::api::events::v1::Event> {
    let (reader, writer) = kube::runtime::reflector::store();
    let trigger = kube::runtime::reflector(
        writer,
        watch_objects(
            Api::all(client.clone()),
            watcher::Config::default().fields(reconcile::conflict::FIELD_SELECTOR),
        ),
    )
    .applied_objects();
    Controller::for_stream(trigger, reader)
        .trigger_backoff(vmdhcp_api::runtime::watch_backoff())
        .graceful_shutdown_on(stop.clone().cancelled_owned())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher;

    use super::{GONE_WITHOUT_BACKOFF, relist_at_once};

    fn status(code: u16) -> watcher::Error {
        watcher::Error::WatchError(Box::new(
            serde_json::from_value(serde_json::json!({"status": "Failure", "code": code,
                "reason": "Expired", "message": "too old resource version: 263 (271)"}))
            .expect("a Status"),
        ))
    }

    fn summary(items: &[Result<watcher::Event<ConfigMap>, watcher::Error>]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Ok(_) => "event".to_owned(),
                Err(watcher::Error::WatchError(s)) => s.code.to_string(),
                Err(e) => e.to_string(),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn one_gone_per_interval_passes_without_a_backoff_other_errors_always_reach_it() {
        let first: Vec<_> = relist_at_once(futures::stream::iter([
            Err(status(410)),
            Ok(watcher::Event::<ConfigMap>::InitDone),
            Err(status(500)),
            Err(status(410)),
        ]))
        .collect()
        .await;
        assert_eq!(
            summary(&first),
            ["event", "500", "410"],
            "the first 410 is swallowed, the next within the interval is not"
        );

        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut filtered = Box::pin(relist_at_once(rx));
        tx.unbounded_send(Err(status(410))).expect("send");
        tx.unbounded_send(Ok(watcher::Event::<ConfigMap>::InitDone))
            .expect("send");
        assert!(matches!(filtered.next().await, Some(Ok(_))));
        tokio::time::advance(GONE_WITHOUT_BACKOFF).await;
        tx.unbounded_send(Err(status(410))).expect("send");
        tx.unbounded_send(Ok(watcher::Event::<ConfigMap>::InitDone))
            .expect("send");
        assert!(
            matches!(filtered.next().await, Some(Ok(_))),
            "a 410 after the interval is swallowed again"
        );
    }
}
