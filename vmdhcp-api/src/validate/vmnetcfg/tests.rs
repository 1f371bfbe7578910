use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rstest::rstest;

use super::*;

const MAC1: &str = "fa:cf:8e:50:82:fc";
const MAC2: &str = "fa:cf:8e:50:82:fd";
const OTHER_MAC: &str = "ca:70:82:e6:84:6e";

/// The README's pool with the documented status, plus a stale `RESERVED` mark at .86 and a
/// `CONFLICT` mark at .87.
fn pool() -> IPPool {
    IPPool::test("default", "net-48")
        .with_cidr("192.168.48.0/24")
        .with_server("192.168.48.77")
        .with_router("192.168.48.1")
        .with_range("192.168.48.81", "192.168.48.90")
        .with_exclude(&["192.168.48.81", "192.168.48.90"])
        .with_allocated("192.168.48.81", "EXCLUDED")
        .with_allocated("192.168.48.84", OTHER_MAC)
        .with_allocated("192.168.48.86", "RESERVED")
        .with_allocated("192.168.48.87", "CONFLICT")
        .with_allocated("192.168.48.90", "EXCLUDED")
}

/// A pool without range bounds, so the network/broadcast checks are reachable.
fn open_pool() -> IPPool {
    IPPool::test("default", "open")
        .with_cidr("10.0.0.0/29")
        .with_server("10.0.0.1")
        .with_range("", "")
}

fn bad_pool() -> IPPool {
    IPPool::test("default", "bad")
        .with_cidr("10.0.0.0")
        .with_server("10.0.0.1")
        .with_range("10.0.0.2", "10.0.0.5")
}

fn messages(found: &[Violation]) -> Vec<&str> {
    found.iter().map(|v| v.message.as_str()).collect()
}

fn check(cfg: &VirtualMachineNetworkConfig) -> Vec<Violation> {
    let (managed, open, bad) = (pool(), open_pool(), bad_pool());
    validate_create(cfg, |n: &NamespacedName| {
        match (n.namespace.as_str(), n.name.as_str()) {
            ("default", "net-48") => Network::Managed(&managed),
            ("default", "open") => Network::Managed(&open),
            ("default", "bad") => Network::Managed(&bad),
            ("default", "unmanaged") => Network::Unmanaged,
            _ => Network::NadNotFound,
        }
    })
}

type Edit = fn(VirtualMachineNetworkConfig) -> VirtualMachineNetworkConfig;

#[rstest]
#[case::no_desired_ip(|c: VirtualMachineNetworkConfig| c.with_nic("default/net-48", MAC1), &[])]
#[case::no_nics(|c: VirtualMachineNetworkConfig| c, &[])]
#[case::unmanaged_network_is_accepted(
    |c: VirtualMachineNetworkConfig| c.with_nic("default/net-48", MAC1).with_nic("default/unmanaged", MAC2),
    &[])]
#[case::desired_ip_on_unmanaged_network_is_ignored(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/unmanaged", MAC1, "10.1.1.1"), &[])]
#[case::nad_missing(
    |c: VirtualMachineNetworkConfig| c.with_nic("default/nope", MAC1),
    &["network-attachment-definitions.k8s.cni.cncf.io \"nope\" not found"])]
#[case::bare_name_resolves_in_vm_namespace(|c: VirtualMachineNetworkConfig| c.with_nic_ip("net-48", MAC1, "192.168.48.83"), &[])]
#[case::empty_network_name(
    |c: VirtualMachineNetworkConfig| c.with_nic("", MAC1),
    &["invalid network name \"\": the name part is empty"])]
#[case::desired_ok(|c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "192.168.48.83"), &[])]
#[case::desired_own_allocation(|c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", OTHER_MAC, "192.168.48.84"), &[])]
#[case::desired_own_allocation_other_spelling(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", "CA-70-82-E6-84-6E", "192.168.48.84"), &[])]
#[case::desired_unparsable(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "x"),
    &["ParseAddr(\"x\"): unable to parse IP"])]
#[case::desired_ipv6(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "fd00::1"),
    &["ip address fd00::1 is not an IPv4 address"])]
#[case::desired_duplicate(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "192.168.48.83").with_nic_ip("net-48", MAC2, "192.168.48.83"),
    &["duplicate desired ip 192.168.48.83 on network default/net-48"])]
#[case::same_ip_on_two_networks(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "10.0.0.3").with_nic_ip("default/open", MAC2, "10.0.0.3"),
    &["ip address 10.0.0.3 is not within subnet 192.168.48.0/24"])]
#[case::desired_outside_subnet(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "10.0.0.1"),
    &["ip address 10.0.0.1 is not within subnet 192.168.48.0/24"])]
#[case::desired_outside_range(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "192.168.48.100"),
    &["ip address 192.168.48.100 is not within pool range 192.168.48.81-192.168.48.90"])]
#[case::desired_network(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/open", MAC1, "10.0.0.0"),
    &["ip address 10.0.0.0 is the same as network ip"])]
#[case::desired_broadcast(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/open", MAC1, "10.0.0.7"),
    &["ip address 10.0.0.7 is the same as broadcast ip"])]
#[case::desired_server(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/open", MAC1, "10.0.0.1"),
    &["ip address 10.0.0.1 is not allocatable"])]
#[case::desired_excluded(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "192.168.48.81"),
    &["ip address 192.168.48.81 is not allocatable"])]
#[case::desired_marked_reserved(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "192.168.48.86"),
    &["ip address 192.168.48.86 is not allocatable"])]
#[case::desired_in_conflict(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "192.168.48.87"),
    &["ip address 192.168.48.87 is not allocatable: it is marked CONFLICT (a DHCP client found it in use by another host); remove the mark from the IPPool's status once the conflict is resolved"])]
#[case::desired_taken(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "192.168.48.84"),
    &["ip address 192.168.48.84 is already allocated to mac ca:70:82:e6:84:6e"])]
#[case::pool_spec_unparsable(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/bad", MAC1, "10.0.0.3"),
    &["invalid CIDR address: 10.0.0.0"])]
#[case::invalid_mac(
    |c: VirtualMachineNetworkConfig| c.with_nic("default/net-48", "zz:zz"),
    &["mac address zz:zz is not a valid MAC address"])]
#[case::every_nic_reported(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/net-48", MAC1, "10.0.0.1").with_nic("default/nope", MAC2),
    &[
        "ip address 10.0.0.1 is not within subnet 192.168.48.0/24",
        "network-attachment-definitions.k8s.cni.cncf.io \"nope\" not found",
    ])]
fn create(#[case] edit: Edit, #[case] want: &[&str]) {
    let cfg = edit(VirtualMachineNetworkConfig::test("default", "vm"));
    assert_eq!(messages(&check(&cfg)), want);
}

#[test]
fn violations_name_the_nic() {
    let cfg = VirtualMachineNetworkConfig::test("default", "vm")
        .with_nic("default/net-48", MAC1)
        .with_nic_ip("default/net-48", MAC2, "192.168.48.84");
    let found = check(&cfg);
    assert_eq!(
        found
            .iter()
            .map(|v| (v.field.as_str(), v.value.as_str()))
            .collect::<Vec<_>>(),
        [("spec.networkConfigs[1].ipAddress", "192.168.48.84")]
    );
}

fn check_update(
    old: &VirtualMachineNetworkConfig,
    new: &VirtualMachineNetworkConfig,
) -> Vec<Violation> {
    let managed = pool();
    validate_update(old, new, |n: &NamespacedName| match n.name.as_str() {
        "net-48" => Network::Managed(&managed),
        "unmanaged" => Network::Unmanaged,
        _ => Network::NadNotFound,
    })
}

#[rstest]
// The old desired IP is now taken by someone else: not re-checked while unchanged.
#[case::unchanged_is_not_rechecked(
    |c: VirtualMachineNetworkConfig| c,
    &[])]
#[case::changed_ip_is_checked(
    |mut c: VirtualMachineNetworkConfig| { c.spec.network_configs[0].ip_address = Some("192.168.48.100".into()); c },
    &["ip address 192.168.48.100 is not within pool range 192.168.48.81-192.168.48.90"])]
#[case::same_mac_other_spelling_is_unchanged(
    |mut c: VirtualMachineNetworkConfig| { c.spec.network_configs[0].mac_address = MAC1.to_uppercase(); c },
    &[])]
#[case::new_nic_duplicates_unchanged_ip(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("net-48", MAC2, "192.168.48.84"),
    &["duplicate desired ip 192.168.48.84 on network default/net-48"])]
#[case::desired_ip_added_to_existing_nic(
    |mut c: VirtualMachineNetworkConfig| { c.spec.network_configs[1].ip_address = Some("192.168.48.90".into()); c },
    &["ip address 192.168.48.90 is not allocatable"])]
// A NIC added on a NAD that does not exist is refused as on create, with or without address.
#[case::new_nic_on_missing_nad(
    |c: VirtualMachineNetworkConfig| c.with_nic("default/nope", "fa:cf:8e:50:82:01"),
    &["network-attachment-definitions.k8s.cni.cncf.io \"nope\" not found"])]
#[case::nic_moved_to_missing_nad(
    |mut c: VirtualMachineNetworkConfig| { c.spec.network_configs[0].network_name = "default/nope".into(); c },
    &["network-attachment-definitions.k8s.cni.cncf.io \"nope\" not found"])]
#[case::new_mac_is_a_new_nic(
    |mut c: VirtualMachineNetworkConfig| { c.spec.network_configs[1].mac_address = "also-bad".into(); c },
    &["mac address also-bad is not a valid MAC address"])]
#[case::new_nic_on_unmanaged_network(
    |c: VirtualMachineNetworkConfig| c.with_nic("default/unmanaged", "fa:cf:8e:50:82:01"),
    &[])]
#[case::new_nic_invalid_mac(
    |c: VirtualMachineNetworkConfig| c.with_nic("default/net-48", "nope"),
    &["mac address nope is not a valid MAC address"])]
#[case::new_nic_on_missing_nad_with_ip(
    |c: VirtualMachineNetworkConfig| c.with_nic_ip("default/nope", "fa:cf:8e:50:82:01", "10.0.0.1"),
    &["network-attachment-definitions.k8s.cni.cncf.io \"nope\" not found"])]
fn update(#[case] edit: Edit, #[case] want: &[&str]) {
    let old = VirtualMachineNetworkConfig::test("default", "vm")
        .with_nic_ip("default/net-48", MAC1, "192.168.48.84")
        .with_nic("default/net-48", "bad-mac-kept-from-before");
    let new = edit(old.clone());
    assert_eq!(messages(&check_update(&old, &new)), want);
}

#[test]
fn nothing_is_checked_while_deleting() {
    let old = VirtualMachineNetworkConfig::test("default", "vm");
    let mut new = old.clone().with_nic_ip("default/nope", "x", "y");
    new.metadata.deletion_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
    assert!(check_update(&old, &new).is_empty());
}

/// The NICs' NAD has been deleted since the object was written: edits that add nothing new
/// on it still go through.
#[rstest]
#[case::unchanged(|c: VirtualMachineNetworkConfig| c, &[])]
#[case::desired_ip_removed(
    |mut c: VirtualMachineNetworkConfig| { c.spec.network_configs[0].ip_address = None; c },
    &[])]
#[case::other_nic_added(
    |c: VirtualMachineNetworkConfig| c.with_nic("default/net-48", MAC2),
    &[])]
#[case::desired_ip_changed(
    |mut c: VirtualMachineNetworkConfig| { c.spec.network_configs[0].ip_address = Some("192.168.48.83".into()); c },
    &["network-attachment-definitions.k8s.cni.cncf.io \"gone\" not found"])]
fn update_with_a_vanished_nad(#[case] edit: Edit, #[case] want: &[&str]) {
    let old = VirtualMachineNetworkConfig::test("default", "vm").with_nic_ip(
        "default/gone",
        MAC1,
        "192.168.48.84",
    );
    let new = edit(old.clone());
    assert_eq!(messages(&check_update(&old, &new)), want);
}

#[test]
fn bare_name_is_looked_up_in_the_vmnetcfgs_namespace() {
    // KubeVirt attaches `net-48` of a VM in `vms` to `vms/net-48`; upstream's webhook looked
    // in `default`. Only `vms/net-48` exists here.
    let managed = pool().with_network("vms/net-48");
    let lookup = |n: &NamespacedName| match (n.namespace.as_str(), n.name.as_str()) {
        ("vms", "net-48") => Network::Managed(&managed),
        _ => Network::NadNotFound,
    };
    let cfg =
        VirtualMachineNetworkConfig::test("vms", "vm").with_nic_ip("net-48", MAC1, "10.0.0.1");
    assert_eq!(
        messages(&validate_create(&cfg, lookup)),
        ["ip address 10.0.0.1 is not within subnet 192.168.48.0/24"]
    );
    let cfg = VirtualMachineNetworkConfig::test("default", "vm").with_nic("net-48", MAC1);
    assert_eq!(
        messages(&validate_create(&cfg, lookup)),
        ["network-attachment-definitions.k8s.cni.cncf.io \"net-48\" not found"]
    );
}

fn created(pool: IPPool, at: &str) -> IPPool {
    let mut pool = pool;
    pool.metadata.creation_timestamp = Some(Time(at.parse().unwrap()));
    pool
}

#[test]
fn pool_for_network_matches_network_names_not_pool_names() {
    let network = NamespacedName::new("default", "net-48");
    let named_elsewhere = IPPool::test("pools", "my-pool").with_network("default/net-48");
    let bare_in_default = IPPool::test("default", "bare").with_network("net-48");
    let bare_elsewhere = IPPool::test("pools", "net-48").with_network("net-48");
    let name = |p: Option<&IPPool>| p.and_then(|p| p.metadata.name.clone());

    assert_eq!(
        name(pool_for_network(
            &network,
            std::slice::from_ref(&named_elsewhere)
        )),
        Some("my-pool".into())
    );
    assert_eq!(
        name(pool_for_network(&network, &[bare_in_default])),
        Some("bare".into())
    );
    // Same name as the NAD, other network: a pool's own name means nothing.
    assert_eq!(name(pool_for_network(&network, &[bare_elsewhere])), None);
    // Works over the `Arc`s a reflector store hands out.
    let arcs = [std::sync::Arc::new(named_elsewhere)];
    assert_eq!(
        name(pool_for_network(&network, &arcs)),
        Some("my-pool".into())
    );
}

#[test]
fn pool_for_network_chooses_as_the_controller() {
    let network = NamespacedName::new("default", "net-48");
    let name = |p: Option<&IPPool>| p.and_then(|p| p.metadata.name.clone());
    let old = created(
        IPPool::test("default", "b-old").with_network("default/net-48"),
        "2024-01-01T00:00:00Z",
    );
    let young = created(
        IPPool::test("default", "a-young").with_network("default/net-48"),
        "2025-01-01T00:00:00Z",
    );
    assert_eq!(
        name(pool_for_network(&network, &[young.clone(), old.clone()])),
        Some("b-old".into())
    );
    // A pool being deleted serves nothing: the controller stops allocating from it.
    let mut deleting = old;
    deleting.metadata.deletion_timestamp = Some(Time("2025-06-01T00:00:00Z".parse().unwrap()));
    assert_eq!(
        name(pool_for_network(&network, &[deleting.clone(), young])),
        Some("a-young".into())
    );
    assert_eq!(name(pool_for_network(&network, &[deleting])), None);
}
