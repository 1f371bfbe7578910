//! The objects the validators look at, kept by kube-runtime reflectors: IPPools,
//! VirtualMachineNetworkConfigs, and the metadata of NetworkAttachmentDefinitions (whether one
//! exists is all the checks ask, so the NAD specs are never downloaded).
//!
//! Each reflector runs its watcher through [`retrying`] (0.5 s doubling to at most 4 s, a
//! `410 Gone` relisted at once): a dropped or failing watch is retried and the store keeps its
//! last contents meanwhile, and after an API server outage the caches catch up within seconds.
//! Managed fields are dropped before caching; nothing reads them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::core::PartialObjectMetaExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::network::NamespacedName;
use vmdhcp_api::runtime::retrying;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

use crate::admission::Cluster;
use crate::error::Error;

/// The metadata of a NetworkAttachmentDefinition, as cached.
pub type NadMeta = PartialObjectMeta<DynamicObject>;

/// `k8s.cni.cncf.io/v1` `NetworkAttachmentDefinition` (Multus), which has no Rust type here.
pub fn nad_resource() -> ApiResource {
    ApiResource {
        group: "k8s.cni.cncf.io".to_owned(),
        version: "v1".to_owned(),
        api_version: "k8s.cni.cncf.io/v1".to_owned(),
        kind: "NetworkAttachmentDefinition".to_owned(),
        plural: "network-attachment-definitions".to_owned(),
    }
}

/// Read handles on the three stores. Cheap to clone.
#[derive(Clone)]
pub struct Caches {
    pools: Store<IPPool>,
    vmnetcfgs: Store<VirtualMachineNetworkConfig>,
    nads: Store<NadMeta>,
}

impl Caches {
    /// Starts watching the whole cluster. Returns the read handles and the future that keeps
    /// them filled until `stop` is cancelled; spawn it.
    pub fn start(
        client: &Client,
        stop: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + use<>) {
        let (pools, pools_writer) = reflector::store();
        let (vmnetcfgs, vmnetcfgs_writer) = reflector::store();
        let nads_writer = reflector::store::Writer::new(nad_resource());
        let nads = nads_writer.as_reader();

        let pool_events = reflector::reflector(
            pools_writer,
            retrying(watcher::watcher(
                Api::<IPPool>::all(client.clone()),
                watcher::Config::default(),
            ))
            .modify(drop_managed_fields),
        );
        let vmnetcfg_events = reflector::reflector(
            vmnetcfgs_writer,
            retrying(watcher::watcher(
                Api::<VirtualMachineNetworkConfig>::all(client.clone()),
                watcher::Config::default(),
            ))
            .modify(drop_managed_fields),
        );
        let nad_events = reflector::reflector(
            nads_writer,
            retrying(watcher::watcher(
                Api::<NadMeta>::all_with(client.clone(), &nad_resource()),
                watcher::Config::default(),
            ))
            .modify(drop_managed_fields),
        );
        let run = async move {
            let drive = futures::future::join3(
                drain(pool_events, "IPPool"),
                drain(vmnetcfg_events, "VirtualMachineNetworkConfig"),
                drain(nad_events, "NetworkAttachmentDefinition"),
            );
            tokio::select! {
                () = stop.cancelled() => {}
                _ = drive => {}
            }
        };
        (
            Self {
                pools,
                vmnetcfgs,
                nads,
            },
            run,
        )
    }

    /// Stores filled once from the given objects: a fixed snapshot of a cluster, for tests and
    /// tools. NADs are given as namespace, name and labels (kept, though no check reads them).
    pub fn from_objects(
        pools: Vec<IPPool>,
        vmnetcfgs: Vec<VirtualMachineNetworkConfig>,
        nads: Vec<(String, String, BTreeMap<String, String>)>,
    ) -> Self {
        let mut pools_writer = reflector::store::Writer::default();
        fill(&mut pools_writer, pools);
        let mut vmnetcfgs_writer = reflector::store::Writer::default();
        fill(&mut vmnetcfgs_writer, vmnetcfgs);
        let mut nads_writer = reflector::store::Writer::new(nad_resource());
        let nads = nads
            .into_iter()
            .map(|(namespace, name, labels)| {
                kube::api::ObjectMeta {
                    namespace: Some(namespace),
                    name: Some(name),
                    labels: Some(labels),
                    ..Default::default()
                }
                .into_response_partial::<DynamicObject>()
            })
            .collect();
        fill(&mut nads_writer, nads);
        Self {
            pools: pools_writer.as_reader(),
            vmnetcfgs: vmnetcfgs_writer.as_reader(),
            nads: nads_writer.as_reader(),
        }
    }

    /// Waits until every store has been listed once.
    ///
    /// # Errors
    /// [`Error::CacheStopped`] when a reflector ended first.
    pub async fn wait_synced(&self) -> Result<(), Error> {
        let stopped = |kind| move |_| Error::CacheStopped { kind };
        self.pools
            .wait_until_ready()
            .await
            .map_err(stopped("IPPool"))?;
        self.vmnetcfgs
            .wait_until_ready()
            .await
            .map_err(stopped("VirtualMachineNetworkConfig"))?;
        self.nads
            .wait_until_ready()
            .await
            .map_err(stopped("NetworkAttachmentDefinition"))
    }
}

fn drop_managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

fn fill<K>(writer: &mut reflector::store::Writer<K>, objects: Vec<K>)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&Event::Init);
    for object in objects {
        writer.apply_watcher_event(&Event::InitApply(object));
    }
    writer.apply_watcher_event(&Event::InitDone);
}

/// Consumes a reflector's events; errors are logged (the backoff retries them).
async fn drain<K, S>(events: S, kind: &'static str)
where
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::InitDone) => tracing::debug!(kind, "cache synced"),
            Ok(_) => {}
            Err(e) => tracing::warn!(kind, error = %e, "watch failed; retrying with backoff"),
        }
    }
}

impl Cluster for Caches {
    fn nad_exists(&self, nad: &NamespacedName) -> bool {
        let key = ObjectRef::new_with(&nad.name, nad_resource()).within(&nad.namespace);
        self.nads.get(&key).is_some()
    }

    fn ippool(&self, pool: &NamespacedName) -> Option<Arc<IPPool>> {
        self.pools
            .get(&ObjectRef::new(&pool.name).within(&pool.namespace))
    }

    fn ippools(&self) -> Vec<Arc<IPPool>> {
        self.pools.state()
    }

    fn vmnetcfgs(&self) -> Vec<VirtualMachineNetworkConfig> {
        self.vmnetcfgs
            .state()
            .iter()
            .map(|c| (**c).clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn snapshot_answers_lookups() {
        let caches = Caches::from_objects(
            vec![IPPool::test("default", "net-48")],
            vec![VirtualMachineNetworkConfig::test("vms", "vm-1")],
            vec![(
                "default".into(),
                "net-48".into(),
                labels(&[("network.harvesterhci.io/ippool-name", "net-48")]),
            )],
        );
        caches.wait_synced().await.unwrap();
        let nad = NamespacedName::new("default", "net-48");
        assert!(caches.nad_exists(&nad));
        assert!(!caches.nad_exists(&NamespacedName::new("other", "net-48")));
        assert!(caches.ippool(&nad).is_some());
        assert!(
            caches
                .ippool(&NamespacedName::new("default", "x"))
                .is_none()
        );
        assert_eq!(caches.ippools().len(), 1);
        assert_eq!(caches.vmnetcfgs()[0].metadata.name.as_deref(), Some("vm-1"));
    }

    #[tokio::test]
    async fn an_unsynced_store_is_not_ready() {
        let (pools, _writer) = reflector::store::<IPPool>();
        let synced = Caches::from_objects(vec![], vec![], vec![]);
        let caches = Caches { pools, ..synced };
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), caches.wait_synced()).await;
        assert!(waited.is_err(), "must still be waiting");
    }
}
