use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rstest::rstest;

use super::*;
use crate::consts::{MARK_EXCLUDED, MARK_RESERVED};
use crate::ippool::IPPoolStatus;
use crate::status::refresh_ipv4;
use crate::validate::ippool::{Context, validate_create};

fn docs_pool() -> IPPool {
    IPPool::test("default", "net-48")
        .with_cidr("192.168.48.0/24")
        .with_server("192.168.48.77")
        .with_router("192.168.48.1")
        .with_range("192.168.48.81", "192.168.48.90")
        .with_exclude(&["192.168.48.81", "192.168.48.90"])
        .with_allocated("192.168.48.81", "EXCLUDED")
        .with_allocated("192.168.48.84", "ca:70:82:e6:84:6e")
        .with_allocated("192.168.48.90", "EXCLUDED")
}

#[test]
fn documented_pool_reports_seven_available_one_used() {
    let ipam = to_ipam_pool(&docs_pool()).unwrap();
    assert_eq!(
        (
            ipam.capacity(),
            ipam.used(),
            ipam.available(),
            ipam.reserved_in_range()
        ),
        (10, 1, 7, 2)
    );
    assert_eq!(
        ipam.state("192.168.48.84".parse().unwrap()),
        ipam::AddrState::Allocated
    );
    assert_eq!(
        allocations(&docs_pool()).unwrap(),
        [(
            "192.168.48.84".parse().unwrap(),
            "ca:70:82:e6:84:6e".to_owned()
        )]
    );
}

#[test]
fn conflict_marks_count_as_used_belong_to_no_mac_and_never_fail_the_rebuild() {
    let pool = docs_pool()
        .with_allocated("192.168.48.85", "CONFLICT")
        // On an exclusion (reserved already), outside the range, unparsable: skipped.
        .with_allocated("192.168.48.81", "CONFLICT")
        .with_allocated("192.168.48.200", "CONFLICT")
        .with_allocated("nope", "CONFLICT");
    let mut ipam = to_ipam_pool(&pool).unwrap();
    assert_eq!((ipam.used(), ipam.available()), (2, 6));
    assert_eq!(
        ipam.state("192.168.48.85".parse().unwrap()),
        ipam::AddrState::Allocated
    );
    assert_eq!(
        allocations(&pool).unwrap().len(),
        1,
        "only the MAC's allocation"
    );
    let handed: Vec<_> =
        std::iter::from_fn(|| ipam.allocate(ipam::Strategy::LowestFree).ok()).collect();
    assert!(
        !handed.contains(&"192.168.48.85".parse().unwrap()),
        "{handed:?}"
    );
}

type Edit = fn(IPPool) -> IPPool;

#[rstest]
#[case::bad_cidr(|p: IPPool| p.with_cidr("192.168.48.0/33"), "invalid CIDR address: 192.168.48.0/33")]
#[case::bad_start(|p: IPPool| p.with_range("", "192.168.48.90"), "spec.ipv4Config.pool.start: ParseAddr(\"\"): unable to parse IP")]
#[case::range_outside(|p: IPPool| p.with_range("192.168.48.81", "192.168.49.1"), "spec.ipv4Config.pool: 192.168.49.1 is outside network 192.168.48.0/24")]
#[case::allocation_not_ip(|p: IPPool| p.with_allocated("x", "aa:bb:cc:dd:ee:ff"), "status.ipv4.allocated[\"x\"] = \"aa:bb:cc:dd:ee:ff\": not an IPv4 address")]
#[case::allocation_outside_range(|p: IPPool| p.with_allocated("192.168.48.91", "aa:bb:cc:dd:ee:ff"), "status.ipv4.allocated[\"192.168.48.91\"] = \"aa:bb:cc:dd:ee:ff\": 192.168.48.91 is outside the pool range 192.168.48.81-192.168.48.90")]
#[case::allocation_on_exclusion(|p: IPPool| p.with_exclude(&["192.168.48.84"]), "status.ipv4.allocated[\"192.168.48.84\"] = \"ca:70:82:e6:84:6e\": 192.168.48.84 is reserved")]
fn rebuild_errors_name_the_entry(#[case] edit: Edit, #[case] message: &str) {
    assert_eq!(
        to_ipam_pool(&edit(docs_pool())).unwrap_err().to_string(),
        message
    );
}

#[rstest]
#[case::exclusion_outside_cidr(|p: IPPool| p.with_exclude(&["10.0.0.1", "192.168.48.82"]), 8)]
#[case::unparsable_exclusion(|p: IPPool| p.with_exclude(&["nope", "192.168.48.82"]), 8)]
#[case::server_in_range(|p: IPPool| p.with_server("192.168.48.85").with_allocated("192.168.48.85", MARK_RESERVED), 6)]
fn reservations_upstream_ignored_are_skipped(#[case] edit: Edit, #[case] available: u32) {
    assert_eq!(
        to_ipam_pool(&edit(docs_pool())).unwrap().available(),
        available
    );
}

#[test]
fn lease_options_of_the_readme_pool() {
    let pool = docs_pool()
        .with_dns(&["1.1.1.1"])
        .with_domain_name("aibao.moe")
        .with_domain_search(&["aibao.moe"])
        .with_ntp(&["pool.ntp.org"])
        .with_lease_time(300);
    let opts = LeaseOptions::from_spec(&pool.spec.ipv4_config).unwrap();
    assert_eq!(
        opts,
        LeaseOptions {
            server_ip: "192.168.48.77".parse().unwrap(),
            network: "192.168.48.0/24".parse().unwrap(),
            router: Some("192.168.48.1".parse().unwrap()),
            dns: vec!["1.1.1.1".parse().unwrap()],
            domain_name: Some("aibao.moe".into()),
            domain_search: vec!["aibao.moe".into()],
            ntp: vec![NtpServer::Host("pool.ntp.org".into())],
            lease_time_secs: 300,
            ignored: vec![],
        }
    );
    assert_eq!(
        (opts.subnet_mask().to_string(), opts.prefix_len()),
        ("255.255.255.0".into(), 24)
    );
    assert_eq!(opts.lease_time(), Duration::from_secs(300));
}

#[rstest]
#[case::unset(None, 31_536_000)]
#[case::zero(Some(0), 31_536_000)]
#[case::negative(Some(-1), 31_536_000)]
#[case::short_kept(Some(5), 5)]
#[case::max(Some(4_294_967_294), 4_294_967_294)]
#[case::capped(Some(i64::MAX), 4_294_967_294)]
fn lease_time(#[case] given: Option<i64>, #[case] secs: u32) {
    let mut cfg = docs_pool().spec.ipv4_config;
    cfg.lease_time = given;
    assert_eq!(LeaseOptions::from_spec(&cfg).unwrap().lease_time_secs, secs);
}

#[test]
fn unsendable_entries_are_listed_not_fatal() {
    let mut cfg = docs_pool()
        .with_dns(&["1.1.1.1", "x"])
        .with_ntp(&["10.0.0.1", "a b"])
        .with_domain_search(&["ok.moe", "-bad"])
        .spec
        .ipv4_config;
    cfg.router = Some("r".into());
    cfg.domain_name = Some(String::new());
    let opts = LeaseOptions::from_spec(&cfg).unwrap();
    assert_eq!((opts.router, opts.domain_name.as_deref()), (None, None));
    assert_eq!(opts.dns.len(), 1);
    assert_eq!(opts.ntp, [NtpServer::Ip("10.0.0.1".parse().unwrap())]);
    assert_eq!(opts.domain_search, ["ok.moe"]);
    let ignored: Vec<(&str, &str)> = opts
        .ignored
        .iter()
        .map(|i| (i.field.as_str(), i.value.as_str()))
        .collect();
    assert_eq!(
        ignored,
        [
            ("spec.ipv4Config.router", "r"),
            ("spec.ipv4Config.dns[1]", "x"),
            ("spec.ipv4Config.ntp[1]", "a b"),
            ("spec.ipv4Config.domainSearch[1]", "-bad")
        ]
    );
}

#[rstest]
#[case::bad_cidr(|p: IPPool| p.with_cidr("x"), "invalid CIDR address: x")]
#[case::bad_server(|p: IPPool| p.with_server(""), "spec.ipv4Config.serverIP: ParseAddr(\"\"): unable to parse IP")]
fn lease_options_need_cidr_and_server(#[case] edit: Edit, #[case] message: &str) {
    assert_eq!(
        LeaseOptions::from_spec(&edit(docs_pool()).spec.ipv4_config)
            .unwrap_err()
            .to_string(),
        message
    );
}

/// Upstream's IPAM (§3.2, §3.10): a map of every address of the range, minus the revoked server,
/// router and exclusions; allocations set entries to true.
fn upstream_counts(
    start: u32,
    end: u32,
    revoked: &BTreeSet<u32>,
    allocated: &BTreeSet<u32>,
) -> (i64, i64) {
    let mut map: BTreeMap<u32, bool> = (start..=end).map(|ip| (ip, false)).collect();
    for ip in revoked {
        map.remove(ip);
    }
    for ip in allocated {
        *map.get_mut(ip)
            .expect("allocations are free addresses of the range") = true;
    }
    let used = map.values().filter(|&&a| a).count();
    (
        i64::try_from(used).unwrap(),
        i64::try_from(map.len() - used).unwrap(),
    )
}

#[derive(Debug, Clone)]
struct Case {
    pool: IPPool,
    start: u32,
    end: u32,
    revoked: BTreeSet<u32>,
    allocated: BTreeSet<u32>,
}

/// A pool that validation accepts: a /20–/30, a range of usable addresses, a server and maybe
/// a router anywhere usable, exclusions anywhere in the subnet, and allocations on free
/// addresses of the range.
fn valid_pool() -> impl Strategy<Value = Case> {
    (20u8..=30, any::<u32>())
        .prop_flat_map(|(prefix, base)| {
            let net = Ipv4Net::new(Ipv4Addr::from(base), prefix).unwrap().trunc();
            let (first, last) = (u32::from(net.network()) + 1, u32::from(net.broadcast()) - 1);
            (
                Just(net),
                first..=last,
                first..=last,
                first..=last,
                proptest::option::of(first..=last),
                proptest::collection::vec(
                    u32::from(net.network())..=u32::from(net.broadcast()),
                    0..6,
                ),
                proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
            )
        })
        .prop_map(|(net, a, b, server, router, excludes, picks)| {
            let (start, end) = (a.min(b), a.max(b));
            let router = router.filter(|&r| r != server);
            let excludes: Vec<u32> = excludes.into_iter().filter(|&e| e != server).collect();
            let revoked: BTreeSet<u32> = std::iter::once(server)
                .chain(router)
                .chain(excludes.iter().copied())
                .collect();
            let free: Vec<u32> = (start..=end).filter(|ip| !revoked.contains(ip)).collect();
            let allocated: BTreeSet<u32> = if free.is_empty() {
                BTreeSet::new()
            } else {
                picks.iter().map(|i| free[i.index(free.len())]).collect()
            };
            let ip = |n: u32| Ipv4Addr::from(n).to_string();
            let mut pool = IPPool::test("default", "prop")
                .with_cidr(&net.to_string())
                .with_server(&ip(server))
                .with_range(&ip(start), &ip(end));
            if let Some(r) = router {
                pool = pool.with_router(&ip(r));
            }
            let exclude_strings: Vec<String> = excludes.iter().map(|&e| ip(e)).collect();
            pool = pool.with_exclude(
                &exclude_strings
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            );
            for &a in &allocated {
                let [.., x, y] = a.to_be_bytes();
                pool = pool.with_allocated(&ip(a), &format!("02:00:00:00:{x:02x}:{y:02x}"));
            }
            Case {
                pool,
                start,
                end,
                revoked,
                allocated,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rebuilt_pool_counts_like_upstream(case in valid_pool()) {
        let ctx = Context { service_cidr: None, nad_exists: true, pools: &[] };
        prop_assert_eq!(validate_create(&case.pool, &ctx), vec![]);

        let ipam = to_ipam_pool(&case.pool).unwrap();
        let (used, available) = upstream_counts(case.start, case.end, &case.revoked, &case.allocated);
        prop_assert_eq!((i64::from(ipam.used()), i64::from(ipam.available())), (used, available));
        prop_assert_eq!(ipam.capacity(), ipam.used() + ipam.available() + ipam.reserved_in_range());

        // The status the controller writes reports the same, with upstream's marks...
        let mut status = case.pool.status.clone().unwrap_or_default();
        refresh_ipv4(&mut status, &case.pool.spec.ipv4_config, &ipam);
        let v4 = status.ipv4.clone().unwrap();
        prop_assert_eq!((v4.used, v4.available), (used, available));
        let cfg = &case.pool.spec.ipv4_config;
        for reserved in std::iter::once(&cfg.server_ip).chain(cfg.router.as_ref()) {
            let n = u32::from(reserved.parse::<Ipv4Addr>().unwrap());
            let mark = v4.allocated.get(reserved).map(String::as_str);
            let excluded = cfg.pool.excludes().contains(reserved);
            prop_assert!(excluded || ((case.start..=case.end).contains(&n) == (mark == Some(MARK_RESERVED))));
        }
        for exclude in cfg.pool.excludes() {
            prop_assert_eq!(v4.allocated.get(exclude).map(String::as_str), Some(MARK_EXCLUDED));
        }

        // ...and rebuilding from that status gives the same pool (marks are skipped).
        let mut rebuilt = case.pool.clone();
        rebuilt.status = Some(IPPoolStatus { ipv4: Some(v4), ..status });
        prop_assert_eq!(to_ipam_pool(&rebuilt).unwrap(), ipam);
    }
}
