//! What the agent keeps of an IPPool: its name, its spec and its allocations, parsed. Pure.
//!
//! The Kubernetes watcher deserialises IPPools straight into [`Pool`]: `metadata` keeps only
//! the name, namespace, uid and resourceVersion (the watcher needs the last), and of the status
//! only `ipv4.allocated` is read, into [`Allocations`]. `managedFields`, which hold one entry
//! per allocation again, the counters and the conditions are skipped while the JSON is read,
//! so an IPPool with 30,000 allocations costs the agent about 300 KB instead of the
//! 10 MB or so of the full object.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::Deserialize;
use vmdhcp_api::ippool::{IPPool, IPPoolSpec};

use crate::table::Allocations;

/// An IPPool as the agent keeps it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "Wire")]
pub struct Pool {
    /// Name, namespace, uid and resourceVersion only.
    pub metadata: ObjectMeta,
    /// The spec, whole (it is small).
    pub spec: IPPoolSpec,
    /// `status.ipv4.allocated`, parsed.
    pub allocations: Allocations,
}

impl Pool {
    /// Whether `spec.paused` is `true`.
    pub fn is_paused(&self) -> bool {
        self.spec.paused == Some(true)
    }
}

impl From<&IPPool> for Pool {
    fn from(pool: &IPPool) -> Self {
        Self {
            metadata: slim(&pool.metadata),
            spec: pool.spec.clone(),
            allocations: Allocations::from_pool(pool),
        }
    }
}

fn slim(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectMeta::default()
    }
}

/// The IPPool's JSON, reading only what [`Pool`] keeps. Unknown fields are skipped without
/// being stored.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    metadata: WireMeta,
    spec: IPPoolSpec,
    #[serde(default)]
    status: Option<WireStatus>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct WireStatus {
    #[serde(default)]
    ipv4: Option<WireIpv4>,
}

#[derive(Deserialize)]
struct WireIpv4 {
    #[serde(default)]
    allocated: Allocations,
}

impl From<Wire> for Pool {
    fn from(wire: Wire) -> Self {
        Self {
            metadata: ObjectMeta {
                name: wire.metadata.name,
                namespace: wire.metadata.namespace,
                uid: wire.metadata.uid,
                resource_version: wire.metadata.resource_version,
                ..ObjectMeta::default()
            },
            spec: wire.spec,
            allocations: wire
                .status
                .and_then(|s| s.ipv4)
                .map(|v4| v4.allocated)
                .unwrap_or_default(),
        }
    }
}

/// The IPPool resource's API coordinates, so `Api<Pool>` and the watcher read IPPools as
/// [`Pool`]s.
impl Resource for Pool {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind((): &()) -> Cow<'_, str> {
        IPPool::kind(&())
    }

    fn group((): &()) -> Cow<'_, str> {
        IPPool::group(&())
    }

    fn version((): &()) -> Cow<'_, str> {
        IPPool::version(&())
    }

    fn plural((): &()) -> Cow<'_, str> {
        IPPool::plural(&())
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool_json() -> serde_json::Value {
        json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {
                "name": "net-48", "namespace": "default", "uid": "u-1", "resourceVersion": "7",
                "labels": {"a": "b"},
                "managedFields": [{"manager": "vmdhcp-controller", "operation": "Update",
                    "fieldsType": "FieldsV1", "subresource": "status",
                    "fieldsV1": {"f:status": {"f:ipv4": {"f:allocated": {
                        "f:192.168.48.84": {}, "f:192.168.48.81": {}}}}}}]
            },
            "spec": {"networkName": "default/net-48", "ipv4Config": {
                "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77",
                "pool": {"start": "192.168.48.81", "end": "192.168.48.90",
                         "exclude": ["192.168.48.81"]}}},
            "status": {
                "ipv4": {"used": 1, "available": 8, "allocated": {
                    "192.168.48.81": "EXCLUDED", "192.168.48.84": "CA-70-82-E6-84-6E",
                    "192.168.48.85": "nope"}},
                "conditions": [{"type": "Registered", "status": "True"}]
            }
        })
    }

    #[test]
    fn reads_what_the_full_type_reads_and_keeps_only_that() {
        let full: IPPool = serde_json::from_value(pool_json()).expect("IPPool");
        let slim: Pool = serde_json::from_value(pool_json()).expect("Pool");
        assert_eq!(slim, Pool::from(&full));
        assert_eq!(slim.metadata.name.as_deref(), Some("net-48"));
        assert_eq!(slim.metadata.resource_version.as_deref(), Some("7"));
        assert!(slim.metadata.managed_fields.is_none());
        assert!(slim.metadata.labels.is_none());
        assert_eq!(slim.spec, full.spec);
        assert_eq!(slim.allocations.len(), 1);
        assert_eq!(slim.allocations.bad().len(), 1);
    }

    #[test]
    fn a_pool_without_status_has_no_allocations_and_one_without_spec_is_refused() {
        let mut v = pool_json();
        v.as_object_mut().expect("object").remove("status");
        let slim: Pool = serde_json::from_value(v.clone()).expect("no status");
        assert!(slim.allocations.is_empty());
        v.as_object_mut().expect("object").remove("spec");
        let err = serde_json::from_value::<Pool>(v).expect_err("no spec");
        assert!(err.to_string().contains("spec"), "{err}");
    }

    #[test]
    fn allocated_that_is_not_a_map_is_an_error() {
        let mut v = pool_json();
        v["status"]["ipv4"]["allocated"] = json!(["192.168.48.84"]);
        assert!(serde_json::from_value::<Pool>(v).is_err());
    }

    #[test]
    fn the_api_paths_are_the_ippools() {
        assert_eq!(
            Pool::url_path(&(), Some("default")),
            IPPool::url_path(&(), Some("default"))
        );
        assert_eq!(Pool::api_version(&()), "network.harvesterhci.io/v1alpha1");
    }
}
