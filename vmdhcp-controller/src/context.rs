//! What every reconcile shares: the client, the settings, the caches, the allocators, the
//! event recorder and the gauges; and the one place IPPool statuses are written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use crate::alloc::Allocators;
use crate::error::Error;
use crate::metrics::Registry;
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

/// A lock per pool, by namespace and name.
pub type PoolLocks = Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>;

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
    /// One lock per pool: reconciles of this process write a pool's status one at a time
    /// (conflicts with other writers are still retried).
    pub pool_locks: PoolLocks,
    /// Kubernetes Events.
    pub recorder: Recorder,
    /// The gauges.
    pub metrics: Arc<Registry>,
    /// Set once both caches have listed everything (orphan collection needs complete lists).
    pub synced: std::sync::atomic::AtomicBool,
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

    /// Reads the IPPool `ns/name` fresh from the API server, lets `change` edit it and its
    /// allocator, and writes the status back with the `resourceVersion` it read — retrying
    /// from a fresh read on every conflict, so that concurrent writers (other vmnetcfgs, the
    /// IPPool reconciler, another controller during a migration) never lose an allocation or
    /// hand one address out twice. `change` must be repeatable: it runs once per attempt.
    ///
    /// # Errors
    /// What `change` returns, API errors, or [`Error::Contended`] after [`WRITE_ATTEMPTS`].
    pub async fn update_pool<T>(
        &self,
        namespace: &str,
        name: &str,
        mut change: impl FnMut(&mut IPPool, &mut crate::alloc::Allocator) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let lock = self
            .pool_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .clone();
        // Concurrent reconciles of one pool would otherwise all read the same version and all
        // but one lose: with many VMs created at once, most of them several times over.
        let _serialised = lock.lock().await;
        for attempt in 1..=WRITE_ATTEMPTS {
            let mut pool = self.read_pool(namespace, name).await?;
            let mut ipam = self.allocators().take(&pool).map_err(|source| Error::Api {
                object: format!("ippool {namespace}/{name}"),
                source,
            })?;
            let before = pool.status.clone();
            let out = change(&mut pool, &mut ipam)?;
            if pool.status == before {
                self.allocators().put(&pool, ipam);
                return Ok(out);
            }
            let status = pool.status.get_or_insert_with(Default::default);
            vmdhcp_api::status::refresh_ipv4(status, &pool.spec.ipv4_config, &ipam.ipam);
            vmdhcp_api::status::touch(status, Timestamp::now());
            if let Some(written) = self.write_pool_status(&pool).await? {
                self.allocators().put(&written, ipam);
                return Ok(out);
            }
            tracing::debug!(pool = %format!("{namespace}/{name}"), attempt, "status conflict; reading again");
            // Spread concurrent writers out a little.
            tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 20)).await;
        }
        Err(Error::Contended {
            object: format!("ippool {namespace}/{name}"),
            attempts: WRITE_ATTEMPTS,
        })
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

    /// The address `mac` holds in `pool` according to this process's allocator, when that
    /// allocator is current for `pool` as given (same UID and `resourceVersion`): lets a
    /// reconcile that changes nothing skip reading the pool from the API server.
    pub fn cached_address(
        &self,
        pool: &IPPool,
        mac: &vmdhcp_api::MacAddr,
    ) -> Option<std::net::Ipv4Addr> {
        self.allocators().address_of(pool, mac)
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
