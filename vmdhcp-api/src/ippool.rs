//! The `IPPool` custom resource (`ippools.network.harvesterhci.io`).
//!
//! Wire types mirror upstream's Go structs field by field so that objects written by either
//! implementation round-trip unchanged through the other:
//!
//! - Go pointers and presence-sensitive fields (`paused`, `router`, `domainName`, `leaseTime`,
//!   `pool.exclude`) are `Option`s, so "absent" and "empty" stay distinct.
//! - Go `omitempty` strings, slices and maps are plain values skipped when empty, as Go does.
//! - Addresses stay `String`s: stored objects may hold values upstream never validated (e.g.
//!   `dns` items), and one bad entry must not make the whole object unreadable. Parsing happens
//!   in [`crate::convert`] and [`crate::validate`], which name the offending field.
//! - Fields the schema requires but the mutating webhook fills in (`serverIP`, `pool.start`,
//!   `pool.end`) deserialise as empty when absent, because the mutator sees objects before
//!   schema validation does. [`crate::crd`] restores them in the schema's `required` lists.
//!
//! ## Range changes (deviation from upstream)
//! Upstream freezes `pool.start` and `pool.end` with CEL rules (`Start is immutable`,
//! `End is immutable`). Our CRD does **not** carry those two rules, so a pool can be widened or
//! narrowed; the validating webhook allows a range change only when every allocation stays
//! inside the new range (the resize `ipam` supports). Every other rule, name and message is
//! upstream's. Trade-off: with our CRD installed, range changes are admitted only by our
//! webhook; a Go controller running against such an object would not rebuild its IPAM.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::network::{NamespacedName, resolve_network_name};

/// Desired state of an [`IPPool`]: one IPv4 subnet served on one network.
// Every printer column repeats `type_`; clippy reads the derive's arguments as duplicated
// attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "network.harvesterhci.io",
    version = "v1alpha1",
    kind = "IPPool",
    plural = "ippools",
    singular = "ippool",
    namespaced,
    status = "IPPoolStatus",
    shortname = "ippl",
    shortname = "ippls",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "NETWORK", type_ = "string", json_path = ".spec.networkName"),
    printcolumn(
        name = "AVAILABLE",
        type_ = "integer",
        json_path = ".status.ipv4.available"
    ),
    printcolumn(name = "USED", type_ = "integer", json_path = ".status.ipv4.used"),
    printcolumn(
        name = "REGISTERED",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Registered')].status"
    ),
    printcolumn(
        name = "CACHEREADY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='CacheReady')].status"
    ),
    printcolumn(
        name = "AGENTREADY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='AgentReady')].status"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// Subnet, range, server and DHCP options. Go always serialises it; absent reads as empty.
    #[serde(default)]
    pub ipv4_config: IPv4Config,

    /// The NetworkAttachmentDefinition served: `<namespace>/<name>`, or `<name>` in the pool's
    /// own namespace (see [`IPPool::network`]).
    #[x_kube(validation = Rule::new("self == oldSelf").message("NetworkName is immutable"))]
    #[schemars(length(max = 64))]
    pub network_name: String,

    /// Administrative disable: the agent is removed, allocations are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// `spec.ipv4Config`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("!has(oldSelf.router) || has(self.router)").message("Router is required once set"))]
#[serde(rename_all = "camelCase")]
pub struct IPv4Config {
    /// The subnet, e.g. `192.168.48.0/24`; host bits are allowed and ignored, as Go's
    /// `net.ParseCIDR` does.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("CIDR is immutable"))]
    pub cidr: String,

    /// Address of the DHCP server (the agent's NIC). Filled by the mutating webhook when empty.
    #[serde(default, rename = "serverIP")]
    #[schemars(ipv4)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("ServerIP is immutable"))]
    pub server_ip: String,

    /// The range handed out. Filled by the mutating webhook when incomplete.
    #[serde(default)]
    pub pool: Pool,

    /// Default gateway (DHCP option 3). Can be added later, never changed or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(ipv4)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("Router is immutable"))]
    pub router: Option<String>,

    /// DNS servers (option 6), at most 3. Upstream's `format: ipv4` sits on the array, where it
    /// checks nothing; the webhook checks each item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3), extend("format" = "ipv4"))]
    pub dns: Vec<String>,

    /// Domain name (option 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,

    /// Domain search list (option 119).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_search: Vec<String>,

    /// NTP servers (option 42), at most 4: IPv4 literals or host names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub ntp: Vec<String>,

    /// Lease time in seconds (option 51); unset or not positive means one year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_time: Option<i64>,
}

/// `spec.ipv4Config.pool`: the inclusive range handed out, minus exclusions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
// Upstream's message for this rule names `End` although the rule is about `exclude`; the
// message is part of the contract (clients match on it), so it is kept verbatim.
#[x_kube(validation = Rule::new("!has(oldSelf.exclude) || has(self.exclude)").message("End is required once set"))]
pub struct Pool {
    /// First address handed out. Mutable in our CRD (see the module docs).
    #[serde(default)]
    #[schemars(ipv4)]
    pub start: String,

    /// Last address handed out. Mutable in our CRD (see the module docs).
    #[serde(default)]
    #[schemars(ipv4)]
    pub end: String,

    /// Addresses never handed out (marked `EXCLUDED` in the status). Can be added when absent,
    /// never changed or removed. `Option` because presence matters to the CEL rule above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "ipv4"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("Exclude is immutable"))]
    pub exclude: Option<Vec<String>>,
}

/// Observed state of an [`IPPool`], written by the controller.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolStatus {
    /// When the controller last changed the status or the allocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::date_time_schema")]
    pub last_update: Option<Time>,

    /// Allocations and counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<IPv4Status>,

    /// The agent Pod serving this pool, and the image it should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pod_ref: Option<PodReference>,

    /// `Registered`, `CacheReady`, `AgentReady`, `Stopped`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// `status.ipv4`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct IPv4Status {
    /// IP → MAC of every allocation, plus the marks [`EXCLUDED`](crate::consts::MARK_EXCLUDED)
    /// and [`RESERVED`](crate::consts::MARK_RESERVED).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocated: BTreeMap<String, String>,
    /// Addresses allocated. Always serialised (upstream has no `omitempty`).
    #[serde(default)]
    pub used: i64,
    /// Addresses free. Always serialised.
    #[serde(default)]
    pub available: i64,
}

/// `status.agentPodRef`: the agent Pod and the image it should run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct PodReference {
    /// Namespace of the Pod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name of the Pod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Desired agent image; a Pod running another image is replaced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// UID of the Pod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl IPPool {
    /// The NetworkAttachmentDefinition served, a bare `spec.networkName` resolved in the
    /// pool's namespace (see [`resolve_network_name`]).
    ///
    /// # Errors
    /// [`Error::InvalidNetworkName`](crate::Error::InvalidNetworkName) for an empty name.
    pub fn network(&self) -> Result<NamespacedName, crate::Error> {
        let namespace = self.metadata.namespace.as_deref().unwrap_or_default();
        resolve_network_name(&self.spec.network_name, namespace)
    }

    /// Whether `spec.paused` is `true`.
    pub fn is_paused(&self) -> bool {
        self.spec.paused == Some(true)
    }

    /// `status.ipv4.allocated`, empty when there is no status.
    pub fn allocated(&self) -> impl Iterator<Item = (&str, &str)> {
        self.status
            .iter()
            .filter_map(|s| s.ipv4.as_ref())
            .flat_map(|v4| {
                v4.allocated
                    .iter()
                    .map(|(ip, mac)| (ip.as_str(), mac.as_str()))
            })
    }

    /// `status.conditions`, empty when there is no status.
    pub fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl Pool {
    /// The excluded addresses as written, empty when absent.
    pub fn excludes(&self) -> &[String] {
        self.exclude.as_deref().unwrap_or_default()
    }
}
