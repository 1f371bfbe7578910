use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rstest::rstest;
use std::sync::Arc;

use super::*;

/// The README's pool: server and router outside the range.
fn base() -> IPPool {
    IPPool::test("default", "net-48")
        .with_cidr("192.168.48.0/24")
        .with_server("192.168.48.77")
        .with_router("192.168.48.1")
        .with_range("192.168.48.81", "192.168.48.90")
}

fn ctx(pools: &[Arc<IPPool>]) -> Context<'_> {
    Context {
        service_cidr: Some("10.53.0.0/16".parse().unwrap()),
        nad_exists: true,
        pools,
    }
}

fn messages(found: &[Violation]) -> Vec<&str> {
    found.iter().map(|v| v.message.as_str()).collect()
}

type Edit = fn(IPPool) -> IPPool;

#[rstest]
// --- upstream's checks and messages, in upstream's order ---
#[case::valid(|p: IPPool| p, &[])]
#[case::cidr_unparsable(|p: IPPool| p.with_cidr("192.168.48.0"), &["invalid CIDR address: 192.168.48.0"])]
#[case::start_unparsable(|p: IPPool| p.with_range("x", "192.168.48.90"), &["ParseAddr(\"x\"): unable to parse IP"])]
#[case::end_unparsable(|p: IPPool| p.with_range("192.168.48.81", "1.2.3"), &["ParseAddr(\"1.2.3\"): unable to parse IP"])]
#[case::server_unparsable(|p: IPPool| p.with_server("::1"), &["ParseAddr(\"::1\"): unable to parse IP"])]
#[case::router_unparsable(|p: IPPool| p.with_router("r"), &["ParseAddr(\"r\"): unable to parse IP"])]
#[case::overlaps_service_cidr(
    |p: IPPool| p.with_cidr("10.53.7.0/24").with_server("10.53.7.2").with_router("10.53.7.1").with_range("10.53.7.10", "10.53.7.20"),
    &["cidr 10.53.7.0/24 overlaps cluster service cidr 10.53.0.0/16"])]
#[case::contains_service_cidr(
    |p: IPPool| p.with_cidr("10.0.0.0/8").with_server("10.0.0.2").with_router("10.0.0.1").with_range("10.0.0.10", "10.0.0.20"),
    &["cidr 10.0.0.0/8 overlaps cluster service cidr 10.53.0.0/16"])]
#[case::start_outside(|p: IPPool| p.with_range("192.168.49.1", "192.168.48.90"), &["start ip 192.168.49.1 is not within subnet"])]
#[case::start_network(|p: IPPool| p.with_range("192.168.48.0", "192.168.48.90"), &["start ip 192.168.48.0 is the same as network ip"])]
#[case::start_broadcast(|p: IPPool| p.with_range("192.168.48.255", "192.168.48.255"), &["start ip 192.168.48.255 is the same as broadcast ip", "end ip 192.168.48.255 is the same as broadcast ip"])]
#[case::end_outside(|p: IPPool| p.with_range("192.168.48.81", "192.168.49.1"), &["end ip 192.168.49.1 is not within subnet"])]
#[case::end_network(|p: IPPool| p.with_range("192.168.48.0", "192.168.48.0"), &["start ip 192.168.48.0 is the same as network ip", "end ip 192.168.48.0 is the same as network ip"])]
#[case::end_broadcast(|p: IPPool| p.with_range("192.168.48.81", "192.168.48.255"), &["end ip 192.168.48.255 is the same as broadcast ip"])]
#[case::server_outside(|p: IPPool| p.with_server("10.0.0.1"), &["server ip 10.0.0.1 is not within subnet"])]
#[case::server_network(|p: IPPool| p.with_server("192.168.48.0"), &["server ip 192.168.48.0 is the same as network ip"])]
#[case::server_broadcast(|p: IPPool| p.with_server("192.168.48.255"), &["server ip 192.168.48.255 is the same as broadcast ip"])]
#[case::server_is_router(|p: IPPool| p.with_server("192.168.48.1"), &["server ip 192.168.48.1 is the same as router ip"])]
#[case::router_outside(|p: IPPool| p.with_router("10.0.0.1"), &["router ip 10.0.0.1 is not within subnet"])]
#[case::router_network(|p: IPPool| p.with_router("192.168.48.0"), &["router ip 192.168.48.0 is the same as network ip"])]
#[case::router_broadcast(|p: IPPool| p.with_router("192.168.48.255"), &["router ip 192.168.48.255 is the same as broadcast ip"])]
#[case::upstream_order(
    |p: IPPool| p.with_range("192.168.49.1", "192.168.48.255").with_server("192.168.48.0").with_router("10.0.0.1"),
    &[
        "start ip 192.168.49.1 is not within subnet",
        "end ip 192.168.48.255 is the same as broadcast ip",
        "server ip 192.168.48.0 is the same as network ip",
        "router ip 10.0.0.1 is not within subnet",
    ])]
// --- ours ---
#[case::empty_network_name(|p: IPPool| p.with_network(""), &["invalid network name \"\": the name part is empty"])]
#[case::end_before_start(|p: IPPool| p.with_range("192.168.48.90", "192.168.48.81"), &["end ip 192.168.48.81 is less than start ip 192.168.48.90"])]
#[case::exclude_not_ipv4(|p: IPPool| p.with_exclude(&["192.168.48.82", "oops"]), &["exclude ip oops is not an IPv4 address"])]
#[case::exclude_outside_cidr(|p: IPPool| p.with_exclude(&["192.168.49.82"]), &["exclude ip 192.168.49.82 is not within subnet"])]
#[case::exclude_outside_range_is_fine(|p: IPPool| p.with_exclude(&["192.168.48.20"]), &[])]
#[case::server_excluded(|p: IPPool| p.with_exclude(&["192.168.48.77"]), &["server ip 192.168.48.77 is already occupied"])]
#[case::dns_not_ipv4(|p: IPPool| p.with_dns(&["1.1.1.1", "dns.google"]), &["dns server dns.google is not an IPv4 address"])]
#[case::ntp_ip_and_host_are_fine(|p: IPPool| p.with_ntp(&["pool.ntp.org", "192.168.48.2"]), &[])]
#[case::ntp_garbage(|p: IPPool| p.with_ntp(&["pool ntp org"]), &["ntp server pool ntp org is neither an IPv4 address nor a host name"])]
#[case::domain_name(|p: IPPool| p.with_domain_name("aibao.moe"), &[])]
#[case::domain_name_invalid(|p: IPPool| p.with_domain_name("-x.moe"), &["domain name -x.moe is not a valid domain name"])]
#[case::domain_search_invalid(|p: IPPool| p.with_domain_search(&["aibao.moe", "a..b"]), &["domain search a..b is not a valid domain name"])]
#[case::domain_name_empty_is_unset(|p: IPPool| p.with_domain_name(""), &[])]
// Every leaseTime upstream accepted is accepted (odd ones get a warning, see below).
#[case::lease_time_min(|p: IPPool| p.with_lease_time(60), &[])]
#[case::lease_time_max(|p: IPPool| p.with_lease_time(4_294_967_294), &[])]
#[case::lease_time_zero_is_unset(|p: IPPool| p.with_lease_time(0), &[])]
#[case::lease_time_negative(|p: IPPool| p.with_lease_time(-5), &[])]
#[case::lease_time_short(|p: IPPool| p.with_lease_time(59), &[])]
#[case::lease_time_beyond_32_bits(|p: IPPool| p.with_lease_time(i64::MAX), &[])]
#[case::zero_values(
    |mut p: IPPool| {
        let cfg = &mut p.spec.ipv4_config;
        (cfg.lease_time, cfg.domain_name, cfg.pool.exclude) = (Some(0), Some(String::new()), Some(vec![]));
        p.with_paused(false)
    },
    &[])]
fn create(#[case] edit: Edit, #[case] want: &[&str]) {
    assert_eq!(messages(&validate_create(&edit(base()), &ctx(&[]))), want);
}

#[test]
fn violations_name_field_and_value() {
    let found = validate_create(
        &base()
            .with_dns(&["1.1.1.1", "nope"])
            .with_range("192.168.49.1", "192.168.48.90"),
        &ctx(&[]),
    );
    let fields: Vec<(&str, &str)> = found
        .iter()
        .map(|v| (v.field.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("spec.ipv4Config.pool.start", "192.168.49.1"),
            ("spec.ipv4Config.dns[1]", "nope")
        ]
    );
}

#[rstest]
#[case::qualified(
    "default/net-48",
    "network-attachment-definitions.k8s.cni.cncf.io \"net-48\" not found"
)]
#[case::bare_name_in_own_namespace(
    "net-48",
    "network-attachment-definitions.k8s.cni.cncf.io \"net-48\" not found"
)]
fn missing_nad(#[case] network: &str, #[case] message: &str) {
    let ctx = Context {
        nad_exists: false,
        ..ctx(&[])
    };
    assert_eq!(
        messages(&validate_create(&base().with_network(network), &ctx)),
        [message]
    );
}

#[test]
fn no_service_cidr_means_no_overlap_check() {
    let pool = base()
        .with_cidr("10.53.7.0/24")
        .with_server("10.53.7.2")
        .with_router("10.53.7.1")
        .with_range("10.53.7.10", "10.53.7.20");
    assert!(
        validate_create(
            &pool,
            &Context {
                service_cidr: None,
                ..ctx(&[])
            }
        )
        .is_empty()
    );
}

#[rstest]
#[case::same_network_other_pool(IPPool::test("other", "pool-b").with_network("default/net-48"), &["network default/net-48 is already served by IPPool other/pool-b"])]
#[case::bare_name_resolves_in_its_namespace(IPPool::test("default", "pool-b").with_network("net-48"), &["network default/net-48 is already served by IPPool default/pool-b"])]
#[case::bare_name_elsewhere_is_another_network(IPPool::test("other", "pool-b").with_network("net-48"), &[])]
#[case::itself_is_not_a_duplicate(IPPool::test("default", "net-48"), &[])]
fn one_pool_per_network(#[case] existing: IPPool, #[case] want: &[&str]) {
    let pools = [Arc::new(existing)];
    assert_eq!(messages(&validate_create(&base(), &ctx(&pools))), want);
}

fn with_allocations(p: IPPool) -> IPPool {
    p.with_exclude(&["192.168.48.81", "192.168.48.90"])
        .with_allocated("192.168.48.81", "EXCLUDED")
        .with_allocated("192.168.48.90", "EXCLUDED")
        .with_allocated("192.168.48.84", "ca:70:82:e6:84:6e")
}

#[rstest]
#[case::unchanged(|p: IPPool| p, &[])]
#[case::network_name(|p: IPPool| p.with_network("default/net-49"), &["NetworkName is immutable"])]
#[case::cidr(|p: IPPool| p.with_cidr("192.168.48.0/23"), &["CIDR is immutable"])]
#[case::server(|p: IPPool| p.with_server("192.168.48.78"), &["ServerIP is immutable"])]
#[case::router_changed(|p: IPPool| p.with_router("192.168.48.2"), &["Router is immutable"])]
#[case::router_removed(|mut p: IPPool| { p.spec.ipv4_config.router = None; p }, &["Router is required once set"])]
#[case::exclude_changed(|p: IPPool| p.with_exclude(&["192.168.48.81"]), &["Exclude is immutable"])]
#[case::exclude_removed(|mut p: IPPool| { p.spec.ipv4_config.pool.exclude = None; p }, &["End is required once set"])]
#[case::widen_range(|p: IPPool| p.with_range("192.168.48.10", "192.168.48.200"), &[])]
#[case::narrow_keeping_allocations(|p: IPPool| p.with_range("192.168.48.82", "192.168.48.84"), &[])]
#[case::narrow_dropping_allocation(
    |p: IPPool| p.with_range("192.168.48.85", "192.168.48.95"),
    &["cannot resize to 192.168.48.85-192.168.48.95: 1 allocated address(es) would fall outside: 192.168.48.84"])]
#[case::resize_end_before_start(|p: IPPool| p.with_range("192.168.48.90", "192.168.48.81"), &["end ip 192.168.48.81 is less than start ip 192.168.48.90"])]
#[case::resize_outside_subnet(|p: IPPool| p.with_range("192.168.48.81", "192.168.49.10"), &["end ip 192.168.49.10 is not within subnet"])]
#[case::mutable_options(|p: IPPool| p.with_dns(&["1.1.1.1"]).with_ntp(&["pool.ntp.org"]).with_lease_time(300).with_paused(true), &[])]
#[case::invalid_new_dns(|p: IPPool| p.with_dns(&["x"]), &["dns server x is not an IPv4 address"])]
#[case::server_allocated_in_status(|p: IPPool| p.with_allocated("192.168.48.77", "aa:bb:cc:dd:ee:ff"), &["server ip 192.168.48.77 is already occupied"])]
#[case::server_excluded_in_status(|p: IPPool| p.with_allocated("192.168.48.77", "EXCLUDED"), &["server ip 192.168.48.77 is already occupied"])]
#[case::server_in_conflict_in_status(|p: IPPool| p.with_allocated("192.168.48.77", "CONFLICT"), &["server ip 192.168.48.77 is already occupied"])]
#[case::server_reserved_in_status_is_fine(|p: IPPool| p.with_allocated("192.168.48.77", "RESERVED"), &[])]
fn update(#[case] edit: Edit, #[case] want: &[&str]) {
    let old = with_allocations(base());
    let new = edit(old.clone());
    assert_eq!(messages(&validate_update(&old, &new, &ctx(&[]))), want);
}

#[rstest]
#[case::added_exclude_free(&["192.168.48.83"], &[])]
#[case::added_exclude_allocated(&["192.168.48.84"], &["exclude ip 192.168.48.84 is already allocated to mac ca:70:82:e6:84:6e"])]
fn adding_excludes(#[case] excludes: &[&str], #[case] want: &[&str]) {
    let old = base().with_allocated("192.168.48.84", "ca:70:82:e6:84:6e");
    let new = old.clone().with_exclude(excludes);
    assert_eq!(messages(&validate_update(&old, &new, &ctx(&[]))), want);
}

#[test]
fn update_checks_ratchet_on_unchanged_fields() {
    // Written before our checks existed: invalid DNS, a 5 s lease, an exclusion outside the CIDR.
    let old = base()
        .with_dns(&["not-an-ip"])
        .with_lease_time(5)
        .with_exclude(&["10.9.9.9"]);
    let new = old.clone().with_ntp(&["pool.ntp.org"]);
    assert!(validate_update(&old, &new, &ctx(&[])).is_empty());
    // Touching a field re-checks it.
    let new = old.clone().with_dns(&["still-not-an-ip"]);
    assert_eq!(
        messages(&validate_update(&old, &new, &ctx(&[]))),
        ["dns server still-not-an-ip is not an IPv4 address"]
    );
}

#[test]
fn update_of_a_duplicate_pool_is_not_blocked() {
    let old = base();
    let pools = [Arc::new(
        IPPool::test("other", "pool-b").with_network("default/net-48"),
    )];
    assert!(validate_update(&old, &old.clone().with_lease_time(600), &ctx(&pools)).is_empty());
}

#[test]
fn update_keeps_upstream_checks_and_nad_lookup() {
    let old = base();
    let ctx = Context {
        nad_exists: false,
        ..ctx(&[])
    };
    assert_eq!(
        messages(&validate_update(&old, &old.clone(), &ctx)),
        ["network-attachment-definitions.k8s.cni.cncf.io \"net-48\" not found"]
    );
}

#[test]
fn nothing_is_checked_while_deleting() {
    let old = base();
    let mut new = old.clone().with_server("10.0.0.1").with_cidr("bad");
    new.metadata.deletion_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
    assert!(validate_update(&old, &new, &ctx(&[])).is_empty());
}

#[rstest]
#[case::no_users(vec![], &[])]
#[case::qualified_user(
    vec![VirtualMachineNetworkConfig::test("vms", "vm1").with_nic("default/net-48", "aa:bb:cc:dd:ee:01")],
    &["it's still used by VirtualMachineNetworkConfig(s) vms/vm1, which must be removed at first"])]
#[case::bare_name_user_in_same_namespace(
    vec![
        VirtualMachineNetworkConfig::test("default", "vm1").with_nic("net-48", "aa:bb:cc:dd:ee:01"),
        VirtualMachineNetworkConfig::test("default", "vm2").with_nic("default/other", "aa:bb:cc:dd:ee:02"),
        VirtualMachineNetworkConfig::test("vms", "vm3").with_nic("net-48", "aa:bb:cc:dd:ee:03"),
    ],
    &["it's still used by VirtualMachineNetworkConfig(s) default/vm1, which must be removed at first"])]
fn delete(#[case] vmnetcfgs: Vec<VirtualMachineNetworkConfig>, #[case] want: &[&str]) {
    assert_eq!(messages(&validate_delete(&base(), &vmnetcfgs)), want);
}

#[test]
fn delete_finds_users_when_pool_and_nad_names_differ() {
    // Upstream's index looked up `<pool-ns>/<pool-name>` (issue #10380) and missed these.
    let pool = IPPool::test("pools", "my-pool").with_network("default/net-48");
    let users = [VirtualMachineNetworkConfig::test("default", "vm1")
        .with_nic("default/net-48", "aa:bb:cc:dd:ee:01")];
    assert_eq!(validate_delete(&pool, &users).len(), 1);
}

#[rstest]
#[case::unset(None, &[])]
#[case::zero_is_unset_silently(Some(0), &[])]
#[case::usual(Some(3600), &[])]
#[case::min(Some(60), &[])]
#[case::max(Some(4_294_967_294), &[])]
#[case::negative(Some(-5), &["lease time -5 is not positive: leases last the default 31536000 seconds (one year)"])]
#[case::short(Some(59), &["lease time 59 is shorter than 60 seconds: clients renew several times a minute"])]
#[case::infinite(Some(4_294_967_295), &["lease time 4294967295 is longer than the longest finite DHCP lease: 4294967294 seconds are sent"])]
fn lease_time_warnings(#[case] secs: Option<i64>, #[case] want: &[&str]) {
    let mut pool = base();
    pool.spec.ipv4_config.lease_time = secs;
    assert_eq!(messages(&warnings(None, &pool)), want);
    let found = warnings(None, &pool);
    assert!(found.iter().all(|w| w.field == "spec.ipv4Config.leaseTime"));
}

#[test]
fn warnings_ratchet_on_update() {
    let old = base().with_lease_time(5);
    // Unchanged: no advice again on every edit of another field.
    assert!(warnings(Some(&old), &old.clone().with_dns(&["1.1.1.1"])).is_empty());
    assert_eq!(
        messages(&warnings(Some(&old), &old.clone().with_lease_time(6))),
        ["lease time 6 is shorter than 60 seconds: clients renew several times a minute"]
    );
    let mut deleting = old.clone().with_lease_time(-1);
    deleting.metadata.deletion_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
    assert!(warnings(Some(&old), &deleting).is_empty());
}
