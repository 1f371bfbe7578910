//! What every reconcile shares: the client, the settings, the caches, the allocators, the
//! event recorder and the gauges; and the one place IPPool allocations are written, one
//! writer per pool that writes the operations waiting for it in batches
//! ([`crate::pool_batch`] decides, [`Context::submit`] does the IO).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::alloc::Allocators;
use crate::error::{Error, PoolWriteFailure};
use crate::metrics::Registry;
use crate::pool_batch::{self, BatchSettings, Marked, Next, OpOutcome, PoolOp, Written};
use crate::pool_plan::AgentSettings;

/// How often a status write is tried again after a conflict before the reconcile gives up
/// and is requeued.
pub const WRITE_ATTEMPTS: u32 = 8;

/// Retry delays per object that double on each failure (from [`Backoffs::FIRST`] to
/// [`Backoffs::MAX`]) and start over after a success: hundreds of VMs waiting on an exhausted
/// pool must not keep the API server busy.
#[derive(Debug, Default)]
pub struct Backoffs(Mutex<HashMap<String, u32>>);

impl Backoffs {
    /// The first retry delay.
    pub const FIRST: Duration = Duration::from_secs(5);
    /// The longest.
    pub const MAX: Duration = Duration::from_secs(300);

    /// The delay before the next retry of `key`, counting this failure.
    pub fn next(&self, key: &str) -> Duration {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let failures = map.entry(key.to_owned()).or_default();
        *failures = failures.saturating_add(1);
        Self::FIRST
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
            .min(Self::MAX)
    }

    /// `key` succeeded: its next failure waits [`Backoffs::FIRST`] again.
    pub fn reset(&self, key: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// One pool's writer: the operations waiting for it, whether a writer task runs, and the pool
/// as this process last wrote it (the base of the next batch; a stale base costs a conflict
/// and a read, never a wrong answer).
#[derive(Default)]
struct PoolQueue {
    pending: VecDeque<Pending>,
    writing: bool,
    last: Option<IPPool>,
}

struct Pending {
    op: PoolOp,
    /// The vmnetcfg (`ns/name`) it is for, named in the pool's Events.
    owner: String,
    reply: oneshot::Sender<Result<OpOutcome, PoolWriteFailure>>,
}

/// The pools' writers and how they batch.
pub struct PoolWriters {
    queues: Mutex<HashMap<(String, String), PoolQueue>>,
    settings: BatchSettings,
    /// Bounds the vmnetcfg status writes in flight (a batch hands hundreds of NICs their
    /// addresses at once).
    pub status_writes: tokio::sync::Semaphore,
    /// Writers stop with the reconcilers (a lost lease must not be followed by a write).
    stop: CancellationToken,
    /// Who reports the batches' Events.
    reporter: Reporter,
}

/// vmnetcfg status writes in flight at most.
pub const STATUS_WRITES: usize = 64;

impl PoolWriters {
    /// Writers that batch by `settings` and report as `reporter`, until `stop`.
    pub fn new(settings: BatchSettings, reporter: Reporter, stop: CancellationToken) -> Self {
        Self {
            queues: Mutex::default(),
            settings,
            status_writes: tokio::sync::Semaphore::new(STATUS_WRITES),
            stop,
            reporter,
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PoolQueue>> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets what was last written to `namespace/name` (deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut queues = self.queues();
        let key = (namespace.to_owned(), name.to_owned());
        if queues.get(&key).is_some_and(|q| !q.writing) {
            queues.remove(&key);
        }
    }
}

/// The shared state of the reconcilers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Agent settings from the flags.
    pub settings: AgentSettings,
    /// IPPools as watched.
    pub pools: Store<IPPool>,
    /// vmnetcfgs as watched.
    pub vmnetcfgs: Store<VirtualMachineNetworkConfig>,
    /// Rebuilt allocators.
    pub allocators: Mutex<Allocators>,
    /// Retry delays of failing objects.
    pub backoffs: Backoffs,
    /// One writer per pool: this process writes a pool's allocations in batches, one status
    /// write per batch (conflicts with other writers are redone).
    pub writers: PoolWriters,
    /// Kubernetes Events.
    pub recorder: Recorder,
    /// The gauges.
    pub metrics: Arc<Registry>,
    /// Set once both caches have listed everything (orphan collection needs complete lists).
    pub synced: std::sync::atomic::AtomicBool,
    /// Which vmnetcfg was seen holding which MAC: orphan collection releases only those.
    pub owners: crate::gc::Memory,
}

impl Context {
    /// Publishes an Event about `obj`; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::debug!("could not publish event {reason}: {e}");
        }
    }

    fn allocators(&self) -> std::sync::MutexGuard<'_, Allocators> {
        self.allocators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands `op` to the writer of IPPool `namespace/name` and waits for its outcome. The
    /// operations that wait together are applied to one copy of the pool's status and written
    /// in one status update carrying the `resourceVersion` it was applied to; a conflict
    /// re-reads the pool and redoes the whole batch, so concurrent writers (the IPPool
    /// reconciler, another controller during a migration) never lose an allocation or see one
    /// address handed out twice.
    ///
    /// # Errors
    /// [`Error::PoolWrite`] when the batch could not be written (the pool is gone, its status
    /// does not rebuild, the API server refused, or it kept conflicting).
    pub async fn submit(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        op: PoolOp,
        owner: &str,
    ) -> Result<OpOutcome, Error> {
        let key = (namespace.to_owned(), name.to_owned());
        let (reply, outcome) = oneshot::channel();
        let start = {
            let mut queues = self.writers.queues();
            let queue = queues.entry(key.clone()).or_default();
            queue.pending.push_back(Pending {
                op,
                owner: owner.to_owned(),
                reply,
            });
            !std::mem::replace(&mut queue.writing, true)
        };
        if start {
            let ctx = self.clone();
            tokio::spawn(async move { ctx.write_pool(key).await });
        }
        let object = format!("ippool {namespace}/{name}");
        match outcome.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(failure)) => Err(Error::PoolWrite { object, failure }),
            Err(_) => Err(Error::PoolWrite {
                object,
                failure: PoolWriteFailure::Failed("the controller is stopping".into()),
            }),
        }
    }

    /// The writer of one pool: batches until nothing waits.
    async fn write_pool(self: Arc<Self>, key: (String, String)) {
        let settings = self.writers.settings;
        let mut waited = false;
        loop {
            let next = {
                let mut queues = self.writers.queues();
                let Some(queue) = queues.get_mut(&key) else {
                    return;
                };
                if queue.pending.is_empty() || self.writers.stop.is_cancelled() {
                    queue.writing = false;
                    // Replies dropped here tell their reconciles the controller is stopping.
                    queue.pending.clear();
                    return;
                }
                if !waited && !settings.wait.is_zero() && queue.pending.len() < settings.max {
                    None
                } else {
                    Some((
                        pool_batch::take(&mut queue.pending, settings.max),
                        queue.last.take(),
                    ))
                }
            };
            let Some((batch, base)) = next else {
                waited = true;
                tokio::time::sleep(settings.wait).await;
                continue;
            };
            waited = false;
            let ops: Vec<PoolOp> = batch.iter().map(|p| p.op.clone()).collect();
            let result = tokio::select! {
                result = self.write_batch(&key, &ops, base) => result,
                () = self.writers.stop.cancelled() => continue,
            };
            let outcomes = match result {
                Ok((outcomes, written)) => {
                    if let Some(pool) = &written {
                        self.announce(pool, &batch, &outcomes);
                    }
                    if let Some(queue) = self.writers.queues().get_mut(&key) {
                        queue.last = written;
                    }
                    outcomes.into_iter().map(Ok).collect()
                }
                Err(failure) => vec![Err(failure); batch.len()],
            };
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                // A reconcile that went away (the controller stops) needs no answer.
                let _ = pending.reply.send(outcome);
            }
        }
    }

    /// Publishes what a written batch allocated and released as one Event each on the pool,
    /// without holding up the next batch.
    fn announce(self: &Arc<Self>, pool: &IPPool, batch: &[Pending], outcomes: &[OpOutcome]) {
        let mut allocated = Vec::new();
        let mut released = Vec::new();
        for (pending, outcome) in batch.iter().zip(outcomes) {
            match (&pending.op, outcome) {
                (PoolOp::Allocate(nic), OpOutcome::Allocated(a)) if a.new => {
                    allocated.push((a.ip, nic.mac_text.clone(), pending.owner.clone()));
                }
                (PoolOp::Release { ip, mac }, OpOutcome::Released(true)) => {
                    released.push((*ip, mac.to_string(), pending.owner.clone()));
                }
                // A NIC moved off an address in conflict got a new allocation like any other.
                (
                    PoolOp::Conflict { nic: Some(nic), .. },
                    OpOutcome::Conflict(Marked::Marked(Some(Ok(a)))),
                ) if a.new => {
                    allocated.push((a.ip, nic.mac_text.clone(), pending.owner.clone()));
                }
                _ => {}
            }
        }
        let key = format!(
            "{}/{}",
            pool.namespace().unwrap_or_default(),
            pool.name_any()
        );
        for (is_release, items) in [(false, allocated), (true, released)] {
            if items.is_empty() {
                continue;
            }
            let (reason, action) = if is_release {
                ("Released", "Release")
            } else {
                ("Allocated", "Allocate")
            };
            let event = self.new_event(
                pool,
                EventType::Normal,
                reason,
                action,
                pool_batch::event_note(is_release, &key, &items),
            );
            tokio::spawn(self.publish(event));
        }
    }

    /// Publishes a new Event about `obj` (never counted as a repetition of an earlier one, as
    /// [`Context::event`] does: each has a note of its own); failures are logged, never fatal.
    pub async fn fresh_event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(self.new_event(obj, type_, reason, action, note))
            .await;
    }

    /// Creates `event` in its namespace; a failure is logged, never fatal. The future owns what
    /// it needs, so a writer can spawn it and go on with the next batch.
    fn publish(
        &self,
        event: k8s_openapi::api::events::v1::Event,
    ) -> impl Future<Output = ()> + Send + 'static {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(
            self.client.clone(),
            event.metadata.namespace.as_deref().unwrap_or_default(),
        );
        async move {
            if let Err(e) = events.create(&PostParams::default(), &event).await {
                let reason = event.reason.as_deref().unwrap_or_default();
                tracing::debug!("could not publish event {reason}: {e}");
            }
        }
    }

    /// An Event about `obj`, as [`Recorder`] builds them. Not published through it: it counts
    /// a second Event with the same reason about the same object as a repetition of the first
    /// and keeps the first note, where every batch (every conflict) has a note of its own.
    fn new_event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> k8s_openapi::api::events::v1::Event {
        let now = Timestamp::now();
        let reporter = &self.writers.reporter;
        k8s_openapi::api::events::v1::Event {
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                now,
            )),
            regarding: Some(obj.object_ref(&())),
            note: Some(note),
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                namespace: obj.namespace(),
                name: Some(format!("{}.{:x}", obj.name_any(), now.as_nanosecond())),
                ..Default::default()
            },
            reporting_controller: Some(reporter.controller.clone()),
            reporting_instance: Some(
                reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| reporter.controller.clone()),
            ),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            ..Default::default()
        }
    }

    /// Applies `ops` to the pool (`base` when this process wrote it last, else read) and
    /// writes it once, redoing everything on a conflict. Returns the outcomes and the pool as
    /// written (or as read, when nothing changed).
    async fn write_batch(
        &self,
        (namespace, name): &(String, String),
        ops: &[PoolOp],
        base: Option<IPPool>,
    ) -> Result<(Vec<OpOutcome>, Option<IPPool>), PoolWriteFailure> {
        let mut base = match base {
            Some(pool) => pool,
            None => self
                .read_pool(namespace, name)
                .await
                .map_err(|e| failure(&e))?,
        };
        for attempt in 1..=WRITE_ATTEMPTS {
            let mut pool = base.clone();
            let mut alloc = self.allocators().take(&pool).map_err(|e| {
                PoolWriteFailure::Unbuildable(format!("ippool {namespace}/{name}: {e}"))
            })?;
            let outcomes = pool_batch::apply(&mut pool, &mut alloc, ops, Timestamp::now());
            if !pool_batch::any_changed(&outcomes) {
                self.allocators().put(&pool, alloc);
                return Ok((outcomes, Some(base)));
            }
            let (written, stored) = match self.write_pool_status(&pool).await {
                Ok(Some(stored)) => (Written::Ok, Some(stored)),
                Ok(None) => (Written::Conflict, None),
                Err(e) => return Err(failure(&e)),
            };
            match pool_batch::after_write(&written, attempt, WRITE_ATTEMPTS) {
                Next::Deliver => {
                    if let Some(stored) = &stored {
                        self.allocators().put(stored, alloc);
                    }
                    return Ok((outcomes, stored));
                }
                Next::Redo => {
                    tracing::debug!(pool = %format!("{namespace}/{name}"), attempt, ops = ops.len(), "status conflict; reading again");
                    base = self
                        .read_pool(namespace, name)
                        .await
                        .map_err(|e| failure(&e))?;
                }
                Next::Fail(message) => return Err(PoolWriteFailure::Failed(message)),
            }
        }
        Err(PoolWriteFailure::Failed(format!(
            "status kept changing under us ({WRITE_ATTEMPTS} attempts); will retry"
        )))
    }

    /// Reads the IPPool `namespace/name` from the API server (not the cache).
    async fn read_pool(&self, namespace: &str, name: &str) -> Result<IPPool, Error> {
        Api::<IPPool>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| Error::kube(format!("get ippool {namespace}/{name}"), e))
    }

    /// Writes `pool`'s status with the `resourceVersion` it carries: the pool as written, or
    /// `None` when someone else wrote it first (read again and redo).
    async fn write_pool_status(&self, pool: &IPPool) -> Result<Option<IPPool>, Error> {
        let (namespace, name) = (pool.namespace().unwrap_or_default(), pool.name_any());
        match Api::<IPPool>::namespaced(self.client.clone(), &namespace)
            .replace_status(&name, &PostParams::default(), pool)
            .await
        {
            Ok(written) => Ok(Some(written)),
            Err(e) if crate::error::is_status(&e, 409) => Ok(None),
            Err(e) => Err(Error::kube(
                format!("write ippool {namespace}/{name} status"),
                e,
            )),
        }
    }

    /// The address `mac` holds in `pool` as the watch cache has it (see
    /// [`Allocators::held_in`]): lets a reconcile that changes nothing skip the writer.
    pub fn held_address(
        &self,
        pool: &IPPool,
        mac: &vmdhcp_api::MacAddr,
    ) -> Option<std::net::Ipv4Addr> {
        self.allocators().held_in(pool, mac)
    }

    /// Removes `allocated[ip]` when it belongs to `mac`, without rebuilding the allocator: for
    /// a pool whose status does not rebuild (an older controller let a router or an exclusion
    /// be added on top of an allocation), so that deleting its vmnetcfgs is never blocked.
    /// Counters are left for the next successful rebuild.
    ///
    /// # Errors
    /// API errors, or [`Error::Contended`].
    pub async fn release_unchecked(
        &self,
        namespace: &str,
        name: &str,
        ip: std::net::Ipv4Addr,
        mac: &vmdhcp_api::MacAddr,
    ) -> Result<bool, Error> {
        for _ in 0..WRITE_ATTEMPTS {
            let mut pool = self.read_pool(namespace, name).await?;
            let owned = pool.allocated().any(|(k, v)| {
                k.parse() == Ok(ip) && v.parse::<vmdhcp_api::MacAddr>().is_ok_and(|m| m == *mac)
            });
            if !owned {
                return Ok(false);
            }
            let status = pool.status.get_or_insert_with(Default::default);
            vmdhcp_api::status::release_allocation(status, ip);
            vmdhcp_api::status::touch(status, Timestamp::now());
            if self.write_pool_status(&pool).await?.is_some() {
                return Ok(true);
            }
        }
        Err(Error::Contended {
            object: format!("ippool {namespace}/{name}"),
            attempts: WRITE_ATTEMPTS,
        })
    }
}

/// How a failed read or write of a pool shows to every operation of its batch.
fn failure(e: &Error) -> PoolWriteFailure {
    match e {
        Error::Kube { source, .. } if crate::error::is_status(source, 404) => {
            PoolWriteFailure::Gone(e.condition_message())
        }
        _ => PoolWriteFailure::Failed(e.condition_message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap_and_start_over_after_a_success() {
        let b = Backoffs::default();
        let delays: Vec<u64> = (0..9).map(|_| b.next("a").as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(
            b.next("b"),
            Backoffs::FIRST,
            "objects back off on their own"
        );
        b.reset("a");
        assert_eq!(b.next("a"), Backoffs::FIRST);
    }
}
