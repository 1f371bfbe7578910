//! The `VirtualMachineNetworkConfig` custom resource (`vmnetcfg`): one per VirtualMachine,
//! listing its NICs on Multus networks and the addresses they got.
//!
//! Same wire conventions as [`crate::ippool`]: Go pointers are `Option`s, Go `omitempty`
//! values are skipped when empty, MACs and addresses stay strings as written (compare MACs with
//! [`MacAddr`] / [`same_mac`](crate::mac::same_mac)).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::MacAddr;
use crate::condition::Condition;
use crate::network::{NamespacedName, resolve_network_name};

/// Desired state of a [`VirtualMachineNetworkConfig`].
// Every printer column repeats `type_`; clippy reads the derive's arguments as duplicated
// attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(
    CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default,
)]
#[kube(
    group = "network.harvesterhci.io",
    version = "v1alpha1",
    kind = "VirtualMachineNetworkConfig",
    plural = "virtualmachinenetworkconfigs",
    singular = "virtualmachinenetworkconfig",
    namespaced,
    status = "VirtualMachineNetworkConfigStatus",
    shortname = "vmnetcfg",
    shortname = "vmnetcfgs",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "VMNAME", type_ = "string", json_path = ".spec.vmName"),
    printcolumn(
        name = "ALLOCATED",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Allocated')].status"
    ),
    printcolumn(
        name = "DISABLED",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Disabled')].status"
    ),
    printcolumn(
        name = "INSYNCED",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='InSynced')].status"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineNetworkConfigSpec {
    /// Name of the VirtualMachine (same namespace).
    #[x_kube(validation = Rule::new("self == oldSelf").message("VMName is immutable"))]
    #[schemars(length(max = 64))]
    pub vm_name: String,

    /// One entry per NIC on a Multus network, at most 4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub network_configs: Vec<NetworkConfig>,

    /// Administrative disable: addresses are released but remembered for resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// `spec.networkConfigs[]`: one NIC.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfig {
    /// The NIC's Multus network as the VM names it: `<ns>/<nad>` or `<nad>` in the VM's
    /// namespace.
    #[schemars(length(max = 64))]
    pub network_name: String,

    /// The NIC's MAC address as written in the VM (not normalised; see [`Self::mac`]).
    #[schemars(length(max = 17))]
    pub mac_address: String,

    /// Desired ("static") address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(ipv4)]
    pub ip_address: Option<String>,
}

impl NetworkConfig {
    /// The MAC address, parsed.
    ///
    /// # Errors
    /// [`Error::InvalidMac`](crate::Error::InvalidMac) naming the value.
    pub fn mac(&self) -> Result<MacAddr, crate::Error> {
        self.mac_address.parse()
    }
}

/// Observed state of a [`VirtualMachineNetworkConfig`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineNetworkConfigStatus {
    /// What each NIC got.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_configs: Vec<NetworkConfigStatus>,

    /// `Allocated`, `Disabled`, `InSynced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// `status.networkConfigs[]`: what one NIC got.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfigStatus {
    /// The address allocated.
    #[serde(
        default,
        rename = "allocatedIPAddress",
        skip_serializing_if = "String::is_empty"
    )]
    pub allocated_ip_address: String,
    /// The NIC's MAC address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    /// The NIC's network.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_name: String,
    /// [`STATE_ALLOCATED`](crate::consts::STATE_ALLOCATED), `Pending` or `Stale`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
}

impl VirtualMachineNetworkConfig {
    /// The NetworkAttachmentDefinition of a NIC, a bare name resolved in this object's (the
    /// VM's) namespace, as KubeVirt does.
    ///
    /// # Errors
    /// [`Error::InvalidNetworkName`](crate::Error::InvalidNetworkName) for an empty name.
    pub fn network_of(&self, nic: &NetworkConfig) -> Result<NamespacedName, crate::Error> {
        let namespace = self.metadata.namespace.as_deref().unwrap_or_default();
        resolve_network_name(&nic.network_name, namespace)
    }

    /// Whether `spec.paused` is `true`.
    pub fn is_paused(&self) -> bool {
        self.spec.paused == Some(true)
    }

    /// `status.conditions`, empty when there is no status.
    pub fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}
