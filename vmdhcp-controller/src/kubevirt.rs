//! The part of KubeVirt's `VirtualMachine` the controller reads, and the pure step from a VM
//! to the vmnetcfg it should have.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{CustomResource, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use vmdhcp_api::consts::{
    ANNOTATION_MAC_ADDRESS, ANNOTATION_STATIC_IP_PREFIX, FINALIZER_VMNETCFG, LABEL_VM_NAME,
};
use vmdhcp_api::vmnetcfg::{
    NetworkConfig, VirtualMachineNetworkConfig, VirtualMachineNetworkConfigSpec,
};

/// `kubevirt.io/v1` `VirtualMachine`, reduced to the fields read here (the controller never
/// writes VMs, so nothing else needs to survive a round trip). Every field has a default:
/// one VM the watcher cannot decode would fail the whole list, and with it the reconciler for
/// every VM of the cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachine",
    plural = "virtualmachines",
    namespaced,
    schema = "disabled"
)]
pub struct VirtualMachineSpec {
    /// The VMI template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<VmiTemplate>,
}

/// `spec.template`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct VmiTemplate {
    /// `spec.template.spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<VmiSpec>,
}

/// `spec.template.spec`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct VmiSpec {
    /// Devices, of which the interfaces.
    #[serde(default)]
    pub domain: Domain,
    /// Networks the interfaces attach to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
}

/// `domain`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Domain {
    /// `domain.devices`.
    #[serde(default)]
    pub devices: Devices,
}

/// `domain.devices`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Devices {
    /// The NICs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
}

/// A NIC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// NIC name, matching a network's name.
    #[serde(default)]
    pub name: String,
    /// MAC address, when set in the spec (Harvester ≥ 1.6 puts it in an annotation instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// A network of the VM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Network {
    /// Network name, matching a NIC's name.
    #[serde(default)]
    pub name: String,
    /// Set for Multus networks; pod networks have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multus: Option<Multus>,
}

/// A Multus network reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Multus {
    /// `ns/name` or `name` of the NetworkAttachmentDefinition.
    #[serde(default)]
    pub network_name: String,
}

/// The NICs a VM's vmnetcfg should list, and what was ignored on the way.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// One entry per Multus NIC with a MAC, sorted by NIC name (upstream iterated a Go map,
    /// so multi-NIC VMs flipped in and out of sync).
    pub network_configs: Vec<NetworkConfig>,
    /// Ignored inputs, for a warning: bad static-IP annotations.
    pub warnings: Vec<String>,
}

/// Computes the desired NICs of `vm`: MACs from the `harvesterhci.io/mac-address`
/// annotation, overridden by the spec's; Multus networks attached by NIC name (pod-network
/// NICs ignored, names copied verbatim — a bare name resolves in the VM's namespace, which is
/// also the vmnetcfg's); `static-ip.harvesterhci.io/<nic>` annotations as desired addresses.
///
/// # Errors
/// When the MAC annotation is not a JSON object of strings (upstream logs and gives up on the
/// VM; so does the caller, with this message).
pub fn desired_network_configs(vm: &VirtualMachine) -> Result<Desired, String> {
    let annotations = vm.annotations();
    let mut macs: BTreeMap<String, String> = BTreeMap::new();
    if let Some(raw) = annotations.get(ANNOTATION_MAC_ADDRESS) {
        let parsed: BTreeMap<String, String> = serde_json::from_str(raw)
            .map_err(|e| format!("annotation {ANNOTATION_MAC_ADDRESS} of vm {}: {e}", key(vm)))?;
        macs.extend(parsed.into_iter().filter(|(_, mac)| !mac.is_empty()));
    }
    let spec = vm.spec.template.as_ref().and_then(|t| t.spec.as_ref());
    for nic in spec.iter().flat_map(|s| &s.domain.devices.interfaces) {
        if let Some(mac) = nic.mac_address.as_deref().filter(|m| !m.is_empty()) {
            macs.insert(nic.name.clone(), mac.to_owned());
        }
    }
    let mut desired = Desired::default();
    let networks: BTreeMap<&str, &str> = spec
        .iter()
        .flat_map(|s| &s.networks)
        .filter_map(|n| {
            n.multus
                .as_ref()
                .filter(|m| !m.network_name.is_empty())
                .map(|m| (n.name.as_str(), m.network_name.as_str()))
        })
        .collect();
    for (nic, mac) in &macs {
        if let Some(network) = networks.get(nic.as_str()) {
            desired.network_configs.push(NetworkConfig {
                network_name: (*network).to_owned(),
                mac_address: mac.clone(),
                ip_address: None,
            });
        }
    }
    let names: Vec<&String> = macs
        .keys()
        .filter(|nic| networks.contains_key(nic.as_str()))
        .collect();
    for (annotation, value) in annotations {
        let Some(nic) = annotation.strip_prefix(ANNOTATION_STATIC_IP_PREFIX) else {
            continue;
        };
        let Some(i) = names.iter().position(|n| n.as_str() == nic) else {
            desired.warnings.push(format!(
                "annotation {annotation}: vm {} has no Multus NIC {nic:?}; ignored",
                key(vm)
            ));
            continue;
        };
        match value.trim().parse::<Ipv4Addr>() {
            Ok(ip) => desired.network_configs[i].ip_address = Some(ip.to_string()),
            Err(_) => desired.warnings.push(format!(
                "annotation {annotation}: {value:?} is not an IPv4 address; ignored"
            )),
        }
    }
    Ok(desired)
}

/// The vmnetcfg upstream creates for a VM: same name and namespace, label
/// `harvesterhci.io/vmName`, owned by the VM (no `controller`/`blockOwnerDeletion`, as upstream)
/// so that deleting the VM deletes it.
pub fn new_vmnetcfg(
    vm: &VirtualMachine,
    network_configs: Vec<NetworkConfig>,
) -> VirtualMachineNetworkConfig {
    let name = vm.name_any();
    VirtualMachineNetworkConfig {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: vm.namespace(),
            labels: Some(BTreeMap::from([(LABEL_VM_NAME.to_owned(), name.clone())])),
            owner_references: Some(vec![OwnerReference {
                api_version: VirtualMachine::api_version(&()).into_owned(),
                kind: VirtualMachine::kind(&()).into_owned(),
                name: name.clone(),
                uid: vm.uid().unwrap_or_default(),
                ..OwnerReference::default()
            }]),
            // Created with the vmnetcfg reconciler's finalizer (upstream added it in a second
            // write): one write less per VM, and no window in which a deletion could skip the
            // release.
            finalizers: Some(vec![FINALIZER_VMNETCFG.to_owned()]),
            ..ObjectMeta::default()
        },
        spec: VirtualMachineNetworkConfigSpec {
            vm_name: name,
            network_configs,
            paused: None,
        },
        status: None,
    }
}

/// What the VM reconciler does about a VM and its vmnetcfg.
#[derive(Debug, PartialEq)]
pub enum VmAction {
    /// Nothing to manage (no Multus NIC with a MAC), with the reason to log.
    Skip(String),
    /// Create this vmnetcfg.
    Create(Box<VirtualMachineNetworkConfig>),
    /// Already what it should be.
    InSync,
    /// The NICs changed: write them into its spec. The vmnetcfg reconciler releases the
    /// stale addresses before it allocates new ones in the same pass — upstream's two phases
    /// (`InSynced=False`, then the spec) without the window in which the two writers raced
    /// and, when the update was refused, flipped `InSynced` every retry.
    UpdateSpec(Vec<NetworkConfig>),
}

/// Decides the VM reconciler's step (skip, create, in sync, new spec), with the NIC list from
/// [`desired_network_configs`].
pub fn vm_action(
    vm: &VirtualMachine,
    desired: Vec<NetworkConfig>,
    existing: Option<&VirtualMachineNetworkConfig>,
) -> VmAction {
    if desired.is_empty() {
        return VmAction::Skip(format!(
            "no effective network configs found for vm {}, skipping",
            key(vm)
        ));
    }
    let Some(current) = existing else {
        return VmAction::Create(Box::new(new_vmnetcfg(vm, desired)));
    };
    if same_nics(&current.spec.network_configs, &desired) {
        return VmAction::InSync;
    }
    VmAction::UpdateSpec(desired)
}

/// Same NICs in any order, comparing MACs in any spelling: neither an upper-case MAC nor the
/// order an older controller wrote (upstream iterated a Go map) is a change worth rewriting a
/// vmnetcfg for.
fn same_nics(a: &[NetworkConfig], b: &[NetworkConfig]) -> bool {
    let same = |x: &NetworkConfig, y: &NetworkConfig| {
        x.network_name == y.network_name
            && vmdhcp_api::mac::same_mac(&x.mac_address, &y.mac_address)
            && x.ip_address == y.ip_address
    };
    let mut unmatched: Vec<&NetworkConfig> = b.iter().collect();
    a.len() == b.len()
        && a.iter().all(|x| {
            unmatched
                .iter()
                .position(|y| same(x, y))
                .map(|i| unmatched.swap_remove(i))
                .is_some()
        })
}

fn key(vm: &VirtualMachine) -> String {
    format!("{}/{}", vm.namespace().unwrap_or_default(), vm.name_any())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vmdhcp_api::consts::{REASON_NETWORK_CONFIG_CHANGED, STATUS_FALSE};

    use super::*;

    fn vm(
        annotations: &serde_json::Value,
        interfaces: &serde_json::Value,
        networks: &serde_json::Value,
    ) -> VirtualMachine {
        serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "vm-1", "namespace": "default", "uid": "u-1", "annotations": annotations},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": interfaces}},
                "networks": networks}}}
        }))
        .expect("fixture VM")
    }

    fn nic(network: &str, mac: &str) -> NetworkConfig {
        NetworkConfig {
            network_name: network.into(),
            mac_address: mac.into(),
            ip_address: None,
        }
    }

    fn multus(name: &str, network: &str) -> serde_json::Value {
        json!({"name": name, "multus": {"networkName": network}})
    }

    #[test]
    fn odd_vms_decode_instead_of_failing_the_whole_list() {
        let odd: VirtualMachine = serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "odd", "namespace": "default"},
            "spec": {"runStrategy": "Always", "template": {"spec": {
                "domain": {"devices": {"interfaces": [{"bridge": {}}], "disks": [{"name": "d"}]}, "cpu": {"cores": 2}},
                "networks": [{"multus": {}}, {"name": "x"}]}}}
        }))
        .expect("decodes");
        assert_eq!(
            desired_network_configs(&odd).expect("no annotation"),
            Desired::default()
        );
        let bare: VirtualMachine = serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "bare", "namespace": "default"}, "spec": {}
        }))
        .expect("decodes");
        assert!(
            desired_network_configs(&bare)
                .expect("no annotation")
                .network_configs
                .is_empty()
        );
    }

    #[test]
    fn macs_come_from_the_annotation_and_the_spec_wins() {
        let vm = vm(
            &json!({ANNOTATION_MAC_ADDRESS: r#"{"nic-1":"aa:aa:aa:aa:aa:01","nic-2":"aa:aa:aa:aa:aa:02","nic-3":""}"#}),
            &json!([{"name": "nic-2", "macAddress": "bb:bb:bb:bb:bb:02"}, {"name": "nic-3"}]),
            &json!([
                multus("nic-2", "default/net-2"),
                multus("nic-1", "default/net-1"),
                multus("nic-3", "net-3")
            ]),
        );
        let desired = desired_network_configs(&vm).expect("parses");
        assert_eq!(
            desired.network_configs,
            [
                nic("default/net-1", "aa:aa:aa:aa:aa:01"),
                nic("default/net-2", "bb:bb:bb:bb:bb:02")
            ]
        );
    }

    #[test]
    fn pod_network_nics_and_nics_without_mac_are_left_out() {
        let vm = vm(
            &json!({}),
            &json!([{"name": "default", "macAddress": "aa:aa:aa:aa:aa:00"}, {"name": "nic-1"}]),
            &json!([{"name": "default", "pod": {}}, multus("nic-1", "default/net-1")]),
        );
        let desired = desired_network_configs(&vm).expect("parses");
        assert!(desired.network_configs.is_empty());
        assert!(
            matches!(vm_action(&vm, desired.network_configs, None), VmAction::Skip(m) if m == "no effective network configs found for vm default/vm-1, skipping")
        );
    }

    #[test]
    fn a_bad_mac_annotation_is_an_error_naming_it() {
        let vm = vm(
            &json!({ANNOTATION_MAC_ADDRESS: "{nope"}),
            &json!([]),
            &json!([]),
        );
        let err = desired_network_configs(&vm).expect_err("bad JSON");
        assert!(
            err.contains(ANNOTATION_MAC_ADDRESS) && err.contains("default/vm-1"),
            "{err}"
        );
    }

    #[test]
    fn static_ip_annotations_set_desired_addresses_and_bad_ones_warn() {
        let vm = vm(
            &json!({
                "static-ip.harvesterhci.io/nic-1": " 10.0.0.9 ",
                "static-ip.harvesterhci.io/nic-2": "10.0.0.300",
                "static-ip.harvesterhci.io/nic-9": "10.0.0.10",
            }),
            &json!([{"name": "nic-1", "macAddress": "aa:aa:aa:aa:aa:01"}, {"name": "nic-2", "macAddress": "aa:aa:aa:aa:aa:02"}]),
            &json!([
                multus("nic-1", "default/net-1"),
                multus("nic-2", "default/net-1")
            ]),
        );
        let desired = desired_network_configs(&vm).expect("parses");
        assert_eq!(
            desired.network_configs[0].ip_address.as_deref(),
            Some("10.0.0.9")
        );
        assert_eq!(desired.network_configs[1].ip_address, None);
        assert_eq!(desired.warnings.len(), 2, "{:?}", desired.warnings);
        assert!(desired.warnings.iter().any(|w| w.contains("10.0.0.300")));
        assert!(desired.warnings.iter().any(|w| w.contains("nic-9")));
    }

    #[test]
    fn a_new_vm_gets_an_owned_labelled_vmnetcfg() {
        let vm = vm(
            &json!({}),
            &json!([{"name": "nic-1", "macAddress": "aa:aa:aa:aa:aa:01"}]),
            &json!([multus("nic-1", "default/net-1")]),
        );
        let desired = desired_network_configs(&vm)
            .expect("parses")
            .network_configs;
        let VmAction::Create(cfg) = vm_action(&vm, desired, None) else {
            panic!("expected create");
        };
        assert_eq!(cfg.metadata.name.as_deref(), Some("vm-1"));
        assert_eq!(
            cfg.labels().get(LABEL_VM_NAME).map(String::as_str),
            Some("vm-1")
        );
        let owner = &cfg.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.uid.as_str()
            ),
            ("kubevirt.io/v1", "VirtualMachine", "u-1")
        );
        assert_eq!(owner.controller, None);
        assert_eq!(cfg.spec.vm_name, "vm-1");
        assert_eq!(
            cfg.finalizers(),
            ["wrangler.cattle.io/vm-dhcp-vmnetcfg-controller"],
            "created with the finalizer, not added in a second write"
        );
    }

    #[test]
    fn changed_nics_rewrite_the_spec_whatever_in_synced_says() {
        let vm = vm(
            &json!({}),
            &json!([{"name": "nic-1", "macAddress": "aa:aa:aa:aa:aa:02"}]),
            &json!([multus("nic-1", "default/net-1")]),
        );
        let mut existing = new_vmnetcfg(&vm, vec![nic("default/net-1", "AA:AA:AA:AA:AA:01")]);
        let desired = || {
            desired_network_configs(&vm)
                .expect("parses")
                .network_configs
        };
        assert_eq!(
            vm_action(&vm, desired(), Some(&existing)),
            VmAction::UpdateSpec(desired())
        );
        // A vmnetcfg the Go controller flagged out of sync is updated the same way.
        let mut status = vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfigStatus::default();
        vmdhcp_api::condition::set(
            &mut status.conditions,
            vmdhcp_api::consts::COND_IN_SYNCED,
            STATUS_FALSE,
            REASON_NETWORK_CONFIG_CHANGED,
            "changed",
            jiff::Timestamp::UNIX_EPOCH,
        );
        existing.status = Some(status);
        assert_eq!(
            vm_action(&vm, desired(), Some(&existing)),
            VmAction::UpdateSpec(desired())
        );
        existing.spec.network_configs = vec![nic("default/net-1", "AA:AA:AA:AA:AA:02")];
        assert_eq!(
            vm_action(&vm, desired(), Some(&existing)),
            VmAction::InSync,
            "MAC spelling is not a change"
        );
    }

    #[test]
    fn nic_order_is_not_a_change_but_a_moved_mac_is() {
        let vm = vm(
            &json!({}),
            &json!([{"name": "nic-a", "macAddress": "aa:aa:aa:aa:aa:01"},
                {"name": "nic-b", "macAddress": "aa:aa:aa:aa:aa:02"}]),
            &json!([
                multus("nic-a", "default/net-1"),
                multus("nic-b", "default/net-2")
            ]),
        );
        let desired = || {
            desired_network_configs(&vm)
                .expect("parses")
                .network_configs
        };
        // As the Go controller may have written it: its map order.
        let go_order = new_vmnetcfg(
            &vm,
            vec![
                nic("default/net-2", "aa:aa:aa:aa:aa:02"),
                nic("default/net-1", "aa:aa:aa:aa:aa:01"),
            ],
        );
        assert_eq!(vm_action(&vm, desired(), Some(&go_order)), VmAction::InSync);
        let swapped = new_vmnetcfg(
            &vm,
            vec![
                nic("default/net-1", "aa:aa:aa:aa:aa:02"),
                nic("default/net-2", "aa:aa:aa:aa:aa:01"),
            ],
        );
        assert_eq!(
            vm_action(&vm, desired(), Some(&swapped)),
            VmAction::UpdateSpec(desired())
        );
        let twice = new_vmnetcfg(
            &vm,
            vec![
                nic("default/net-1", "aa:aa:aa:aa:aa:01"),
                nic("default/net-1", "aa:aa:aa:aa:aa:01"),
            ],
        );
        assert_eq!(
            vm_action(&vm, desired(), Some(&twice)),
            VmAction::UpdateSpec(desired()),
            "each NIC matches one entry"
        );
    }
}
