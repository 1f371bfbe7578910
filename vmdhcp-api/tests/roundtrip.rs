//! Objects as upstream writes them (docs/upstream-compat.md, "Custom resources"; the documented example)
//! read and written back unchanged, and read by the pure logic as upstream reads them.

use std::collections::BTreeMap;

use rstest::rstest;
use serde_json::{Value, json};
use vmdhcp_api::consts::{
    LABEL_CLUSTER_NETWORK, LABEL_IPPOOL_NAME, LABEL_IPPOOL_NAMESPACE, STATE_PENDING,
};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::network::{NamespacedName, pool_ref_from_nad_labels};
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
use vmdhcp_api::{MacAddr, agent, condition, convert, status};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[rstest]
#[case::documented_example("ippool-documented.json")]
#[case::failing_pool_with_empty_and_zero_values("ippool-failing.json")]
#[case::just_created("ippool-just-created.json")]
fn ippool_round_trips_unchanged(#[case] name: &str) {
    let json = fixture(name);
    let pool: IPPool = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&pool).unwrap(), json);
}

#[rstest]
#[case::created_by_the_controller("vmnetcfg-controller.json")]
#[case::paused("vmnetcfg-paused.json")]
fn vmnetcfg_round_trips_unchanged(#[case] name: &str) {
    let json = fixture(name);
    let cfg: VirtualMachineNetworkConfig = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&cfg).unwrap(), json);
}

#[test]
fn documented_example_reads_as_upstream_reports_it() {
    let pool: IPPool = serde_json::from_value(fixture("ippool-documented.json")).unwrap();
    assert!(condition::is_true(pool.conditions(), "CacheReady"));
    assert!(!condition::is_true(pool.conditions(), "Stopped"));
    let ipam = convert::to_ipam_pool(&pool).unwrap();
    assert_eq!((ipam.used(), ipam.available()), (1, 7));
    // What our controller would write is what upstream wrote: nothing to change.
    let mut st = pool.status.clone().unwrap();
    assert!(!status::refresh_ipv4(
        &mut st,
        &pool.spec.ipv4_config,
        &ipam
    ));
    assert_eq!(Some(&st), pool.status.as_ref());
    assert_eq!(
        pool.network().unwrap(),
        NamespacedName::new("default", "net-48")
    );
    assert_eq!(
        agent::agent_pod_name("default", "net-48"),
        pool.status.unwrap().agent_pod_ref.unwrap().name
    );
}

#[test]
fn vmnetcfg_values_are_read_not_rewritten() {
    let cfg: VirtualMachineNetworkConfig =
        serde_json::from_value(fixture("vmnetcfg-controller.json")).unwrap();
    let nic = &cfg.spec.network_configs[1];
    // Kept as written on the wire, compared normalised.
    assert_eq!(nic.mac_address, "AE-79-86-D8-CA-AB");
    assert_eq!(nic.mac().unwrap().to_string(), "ae:79:86:d8:ca:ab");
    assert_eq!(
        cfg.network_of(nic).unwrap(),
        NamespacedName::new("default", "net-50")
    );
    let paused: VirtualMachineNetworkConfig =
        serde_json::from_value(fixture("vmnetcfg-paused.json")).unwrap();
    assert!(paused.is_paused());
    assert_eq!(
        paused.status.unwrap().network_configs[0].state,
        STATE_PENDING
    );
}

#[test]
fn readme_vmnetcfg_with_the_old_singular_field_is_read() {
    // The README and docs still show `networkConfig` (pre-2024 name); the API server prunes it,
    // and so do we: the object reads, the stale field is dropped.
    let readme = json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1",
        "kind": "VirtualMachineNetworkConfig",
        "metadata": {"name": "test-vm", "namespace": "default"},
        "spec": {"vmName": "test-vm", "networkConfig": [{"macAddress": "fa:cf:8e:50:82:fc", "networkName": "default/net-48"}]}
    });
    let cfg: VirtualMachineNetworkConfig = serde_json::from_value(readme.clone()).unwrap();
    assert!(cfg.spec.network_configs.is_empty());
    let mut pruned = readme;
    pruned["spec"]
        .as_object_mut()
        .unwrap()
        .remove("networkConfig");
    assert_eq!(serde_json::to_value(&cfg).unwrap(), pruned);
}

#[test]
fn unknown_fields_do_not_break_reading() {
    let mut json = fixture("ippool-documented.json");
    json["spec"]["ipv4Config"]["mtu"] = json!(9000);
    json["spec"]["ipv4Config"]["pool"]["ranges"] = json!(["x"]);
    json["status"]["agentDeploymentRef"] =
        json!({"name": "d", "namespace": "ns", "image": "i", "uid": "u"});
    json["status"]["conditions"][0]["observedGeneration"] = json!(3);
    json["status"]["ipv4"]["allocated"]["not-an-ip"] = json!("garbage");
    json["extra"] = json!(true);
    let pool: IPPool = serde_json::from_value(json).unwrap();
    assert_eq!(pool.spec.ipv4_config.lease_time, Some(300));
    // A bad allocation entry is reported by name when the pool is rebuilt, not when read.
    let err = convert::to_ipam_pool(&pool).unwrap_err().to_string();
    assert!(err.contains("\"not-an-ip\""), "{err}");
}

#[test]
fn mutator_input_without_required_fields_is_read() {
    // Mutating admission sees the object before schema validation: serverIP and the range may
    // be missing.
    let pool: IPPool = serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "net-48", "namespace": "default"},
        "spec": {"networkName": "default/net-48", "ipv4Config": {"cidr": "192.168.48.0/24"}}
    }))
    .unwrap();
    assert_eq!(pool.spec.ipv4_config.server_ip, "");
    assert!(
        !vmdhcp_api::default::default_ippool(&pool)
            .unwrap()
            .0
            .is_empty()
    );
}

#[test]
fn appendix_a_nad_and_vm() {
    // The VM Network NAD Harvester creates, after IPPool reconciliation.
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "net-48", "namespace": "default", "labels": {
            "network.harvesterhci.io/clusternetwork": "mgmt",
            "network.harvesterhci.io/ready": "true",
            "network.harvesterhci.io/type": "L2VlanNetwork",
            "network.harvesterhci.io/vlan-id": "1",
            "network.harvesterhci.io/ippool-namespace": "default",
            "network.harvesterhci.io/ippool-name": "net-48"}},
        "spec": {"config": "{\"cniVersion\":\"0.3.1\",\"name\":\"net-48\",\"type\":\"bridge\",\"bridge\":\"mgmt-br\",\"promiscMode\":true,\"vlan\":1,\"ipam\":{}}"}
    });
    let labels: BTreeMap<String, String> =
        serde_json::from_value(nad["metadata"]["labels"].clone()).unwrap();
    assert_eq!(labels[LABEL_CLUSTER_NETWORK], "mgmt");
    assert!(labels.contains_key(LABEL_IPPOOL_NAMESPACE) && labels.contains_key(LABEL_IPPOOL_NAME));
    assert_eq!(
        pool_ref_from_nad_labels(&labels),
        Some(NamespacedName::new("default", "net-48"))
    );
    assert_eq!(
        agent::cluster_network_node_label(&labels[LABEL_CLUSTER_NETWORK]),
        "network.harvesterhci.io/mgmt"
    );

    // Harvester ≥ 1.6 keeps the MAC in an annotation (NIC name → MAC).
    let annotation = r#"{"default":"ae:79:86:d8:ca:aa"}"#;
    let macs: BTreeMap<String, MacAddr> = serde_json::from_str(annotation).unwrap();
    assert_eq!(macs["default"].to_string(), "ae:79:86:d8:ca:aa");
    assert_eq!(
        agent::agent_pod_name("default", "net-48"),
        "default-net-48-agent"
    );
}
