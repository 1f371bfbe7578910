use std::collections::{BTreeMap, VecDeque};

use rstest::rstest;
use serde_json::json;

use super::*;

fn pool(allocated: &serde_json::Value) -> IPPool {
    serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "net-48", "namespace": "default", "uid": "u1", "resourceVersion": "7"},
        "spec": {"networkName": "default/net-48", "ipv4Config": {
            "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77", "router": "192.168.48.1",
            "pool": {"start": "192.168.48.81", "end": "192.168.48.85", "exclude": ["192.168.48.81"]}}},
        "status": {"lastUpdate": "2026-01-01T00:00:00Z",
                   "ipv4": {"used": 0, "available": 4, "allocated": allocated}}
    }))
    .expect("fixture")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn mac(n: u8) -> MacAddr {
    format!("aa:aa:aa:aa:aa:{n:02x}").parse().expect("mac")
}

fn nic(n: u8) -> PoolOp {
    PoolOp::Allocate(NicRequest {
        mac_text: format!("aa:aa:aa:aa:aa:{n:02x}"),
        mac: mac(n),
        desired: None,
        previous: None,
    })
}

fn wants(n: u8, addr: &str) -> PoolOp {
    PoolOp::Allocate(NicRequest {
        desired: Some(ip(addr)),
        ..match nic(n) {
            PoolOp::Allocate(r) => r,
            PoolOp::Release { .. } | PoolOp::Conflict { .. } => unreachable!(),
        }
    })
}

fn release(n: u8, addr: &str) -> PoolOp {
    PoolOp::Release {
        ip: ip(addr),
        mac: mac(n),
    }
}

fn now() -> Timestamp {
    "2026-12-01T10:00:00Z".parse().expect("time")
}

/// A compact view of outcomes: the address (`*` when new), the refusal, or released / not.
fn summary(outcomes: &[OpOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| match o {
            OpOutcome::Allocated(a) => format!("{}{}", a.ip, if a.new { "*" } else { "" }),
            OpOutcome::Refused(m) => format!("refused: {m}"),
            OpOutcome::Released(r) => format!("released: {r}"),
            OpOutcome::Conflict(Marked::NotHeld) => "not held".to_owned(),
            OpOutcome::Conflict(Marked::Marked(None)) => "marked".to_owned(),
            OpOutcome::Conflict(Marked::Marked(Some(Ok(a)))) => {
                format!("marked, moved to {}{}", a.ip, if a.new { "*" } else { "" })
            }
            OpOutcome::Conflict(Marked::Marked(Some(Err(m)))) => format!("marked, refused: {m}"),
        })
        .collect()
}

fn allocated(pool: &IPPool) -> BTreeMap<String, String> {
    pool.allocated()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[rstest]
#[case::fewer_than_max(3, 10, 3, 0)]
#[case::exactly_max(4, 4, 4, 0)]
#[case::more_than_max(7, 4, 4, 3)]
#[case::max_one_is_one_per_write(3, 1, 1, 2)]
#[case::max_zero_still_makes_progress(2, 0, 1, 1)]
#[case::nothing_waiting(0, 4, 0, 0)]
fn a_batch_takes_the_oldest_up_to_the_maximum(
    #[case] waiting: usize,
    #[case] max: usize,
    #[case] taken: usize,
    #[case] left: usize,
) {
    let mut queue: VecDeque<usize> = (0..waiting).collect();
    let batch = take(&mut queue, max);
    assert_eq!(batch, (0..taken).collect::<Vec<_>>(), "arrival order");
    assert_eq!(queue.len(), left);
    assert_eq!(queue.front().copied(), (left > 0).then_some(taken));
}

#[rstest]
#[case::lowest_free_in_arrival_order(
    json!({"192.168.48.81": "EXCLUDED"}),
    vec![nic(1), nic(2), nic(3)],
    &["192.168.48.82*", "192.168.48.83*", "192.168.48.84*"]
)]
#[case::a_mac_asking_twice_gets_one_address(
    json!({}),
    vec![nic(1), nic(1)],
    &["192.168.48.82*", "192.168.48.82"]
)]
#[case::a_held_address_is_not_new(
    json!({"192.168.48.84": "AA-AA-AA-AA-AA-01"}),
    vec![nic(1), nic(2)],
    &["192.168.48.84", "192.168.48.82*"]
)]
#[case::exhaustion_refuses_only_the_nics_past_the_end(
    json!({}),
    vec![nic(1), nic(2), nic(3), nic(4), nic(5)],
    &["192.168.48.82*", "192.168.48.83*", "192.168.48.84*", "192.168.48.85*",
      "refused: no more ip addresses left in network default/net-48 ipam"]
)]
#[case::two_nics_designating_one_address_first_wins(
    json!({}),
    vec![wants(1, "192.168.48.84"), wants(2, "192.168.48.84"), nic(3)],
    &["192.168.48.84*", "refused: designated ip 192.168.48.84 is already allocated", "192.168.48.82*"]
)]
#[case::a_release_earlier_in_the_batch_frees_the_address_for_a_later_nic(
    json!({"192.168.48.82": "aa:aa:aa:aa:aa:09"}),
    vec![release(9, "192.168.48.82"), nic(1)],
    &["released: true", "192.168.48.82*"]
)]
#[case::a_release_of_another_macs_address_changes_nothing(
    json!({"192.168.48.82": "aa:aa:aa:aa:aa:09"}),
    vec![release(1, "192.168.48.82"), nic(1)],
    &["released: false", "192.168.48.83*"]
)]
fn each_operation_of_a_batch_is_applied_on_its_own_in_order(
    #[case] before: serde_json::Value,
    #[case] ops: Vec<PoolOp>,
    #[case] want: &[&str],
) {
    let mut p = pool(&before);
    let mut alloc = Allocator::rebuild(&p).expect("rebuilds");
    let outcomes = apply(&mut p, &mut alloc, &ops, now());
    assert_eq!(summary(&outcomes), want);
    // The status written holds exactly what the outcomes say, once each.
    let mut by_ip: BTreeMap<String, String> = BTreeMap::new();
    for (ip, holder) in allocated(&p) {
        assert!(by_ip.insert(ip.clone(), holder).is_none(), "{ip} twice");
    }
    for o in &outcomes {
        if let OpOutcome::Allocated(a) = o {
            assert!(
                by_ip.contains_key(&a.ip.to_string()),
                "{a:?} not in the status"
            );
        }
    }
}

#[test]
fn a_batch_writes_counters_and_last_update_once_and_only_when_something_changed() {
    let mut p = pool(&json!({"192.168.48.82": "aa:aa:aa:aa:aa:01"}));
    let before = p.clone();
    let mut alloc = Allocator::rebuild(&p).expect("rebuilds");
    let outcomes = apply(
        &mut p,
        &mut alloc,
        &[nic(1), release(2, "192.168.48.82")],
        now(),
    );
    assert!(!any_changed(&outcomes), "{outcomes:?}");
    assert_eq!(p, before, "nothing to write: not even lastUpdate");

    let outcomes = apply(&mut p, &mut alloc, &[nic(2), nic(3)], now());
    assert!(any_changed(&outcomes));
    let status = p.status.as_ref().expect("status");
    let v4 = status.ipv4.as_ref().expect("ipv4");
    assert_eq!((v4.used, v4.available), (3, 1));
    assert_eq!(
        status.last_update.as_ref().map(|t| t.0),
        Some(now()),
        "stamped with the batch's time"
    );
}

#[test]
fn a_conflict_redoes_the_whole_batch_on_the_fresh_status() {
    let ops = [
        nic(1),
        nic(2),
        wants(3, "192.168.48.85"),
        release(4, "192.168.48.84"),
    ];
    // The version the batch was first applied to.
    let stale = pool(&json!({"192.168.48.84": "aa:aa:aa:aa:aa:04"}));
    let mut first = stale.clone();
    let mut alloc = Allocator::rebuild(&first).expect("rebuilds");
    let outcomes = apply(&mut first, &mut alloc, &ops, now());
    assert_eq!(
        summary(&outcomes),
        [
            "192.168.48.82*",
            "192.168.48.83*",
            "192.168.48.85*",
            "released: true"
        ]
    );
    assert_eq!(after_write(&Written::Conflict, 1, 8), Next::Redo);

    // Meanwhile another writer gave .82 to a MAC of its own, already gave NIC 2 an address,
    // and released .84 itself.
    let mut fresh = pool(&json!({
        "192.168.48.82": "bb:bb:bb:bb:bb:01",
        "192.168.48.84": "AA:AA:AA:AA:AA:02"
    }));
    fresh.metadata.resource_version = Some("9".into());
    // The redo starts from the fresh status and an allocator rebuilt from it; nothing of the
    // first attempt survives.
    let mut alloc = Allocator::rebuild(&fresh).expect("rebuilds");
    let outcomes = apply(&mut fresh, &mut alloc, &ops, now());
    assert_eq!(
        summary(&outcomes),
        [
            "192.168.48.83*",
            "192.168.48.84",
            "192.168.48.85*",
            "released: false"
        ],
        "no address the other writer took, NIC 2 keeps the one it got, .84 is not released twice"
    );
    assert_eq!(
        allocated(&fresh),
        BTreeMap::from([
            ("192.168.48.81".to_owned(), "EXCLUDED".to_owned()),
            ("192.168.48.82".to_owned(), "bb:bb:bb:bb:bb:01".to_owned()),
            ("192.168.48.83".to_owned(), "aa:aa:aa:aa:aa:01".to_owned()),
            ("192.168.48.84".to_owned(), "AA:AA:AA:AA:AA:02".to_owned()),
            ("192.168.48.85".to_owned(), "aa:aa:aa:aa:aa:03".to_owned()),
        ])
    );
    assert_eq!(after_write(&Written::Ok, 2, 8), Next::Deliver);
}

#[rstest]
#[case::stored(Written::Ok, 1, Next::Deliver)]
#[case::conflict_is_redone(Written::Conflict, 1, Next::Redo)]
#[case::conflict_redone_until_the_last_attempt(Written::Conflict, 7, Next::Redo)]
#[case::the_last_conflict_fails_the_batch(
    Written::Conflict,
    8,
    Next::Fail("status kept changing under us (8 attempts); will retry".into())
)]
#[case::other_failures_fail_every_operation_at_once(
    Written::Failed("ippools.network.harvesterhci.io \"net-48\" not found".into()),
    1,
    Next::Fail("ippools.network.harvesterhci.io \"net-48\" not found".into())
)]
fn what_the_writer_does_after_a_write(
    #[case] written: Written,
    #[case] attempt: u32,
    #[case] next: Next,
) {
    assert_eq!(after_write(&written, attempt, 8), next);
}

#[test]
fn batch_size_one_is_one_write_per_nic() {
    let mut queue: VecDeque<PoolOp> = [nic(1), nic(2)].into_iter().collect();
    let mut p = pool(&json!({}));
    let mut writes = 0;
    while !queue.is_empty() {
        let batch = take(&mut queue, 1);
        let mut alloc = Allocator::rebuild(&p).expect("rebuilds");
        if any_changed(&apply(&mut p, &mut alloc, &batch, now())) {
            writes += 1;
        }
    }
    assert_eq!(writes, 2);
    assert_eq!(allocated(&p).len(), 3, "two NICs and the exclusion mark");
}

#[test]
fn a_batch_is_told_in_one_event_whose_note_fits_the_limit() {
    let item = |i: u32| {
        (
            Ipv4Addr::from(0x0a50_0003 + i),
            format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256),
            format!("bench/vm-{i:05}"),
        )
    };
    assert_eq!(
        event_note(false, "bench/net", &[item(0)]),
        "10.80.0.3 to mac 52:54:00:00:00:00 of vmnetcfg bench/vm-00000 allocated from ippool bench/net"
    );
    assert_eq!(
        event_note(true, "bench/net", &[item(0)]),
        "10.80.0.3 of mac 52:54:00:00:00:00 of vmnetcfg bench/vm-00000 released to ippool bench/net"
    );
    assert_eq!(
        event_note(false, "bench/net", &[item(0), item(1)]),
        "2 addresses allocated from ippool bench/net: 10.80.0.3 to mac 52:54:00:00:00:00 of vmnetcfg bench/vm-00000; 10.80.0.4 to mac 52:54:00:00:00:01 of vmnetcfg bench/vm-00001"
    );
    for n in [3, 14, 15, 16, 17, 500, 10_000] {
        let items: Vec<_> = (0..n).map(item).collect();
        let note = event_note(false, "bench/net", &items);
        assert!(note.len() <= NOTE_LIMIT, "{n}: {} bytes", note.len());
        assert!(
            note.starts_with(&format!(
                "{n} addresses allocated from ippool bench/net: 10.80.0.3 to mac"
            )),
            "{note}"
        );
        let named = note.matches(" of vmnetcfg ").count();
        if named < n as usize {
            assert!(
                note.ends_with(&format!(" and {} more", n as usize - named)),
                "{n}: the rest is counted: {note}"
            );
        } else {
            assert!(note.ends_with(&format!("bench/vm-{:05}", n - 1)), "{note}");
        }
    }
}

/// `mac(n)` declined `addr`; its NIC (asking for `desired`) is to move.
fn declined(n: u8, addr: &str, desired: Option<&str>) -> PoolOp {
    let PoolOp::Allocate(mut nic) = nic(n) else {
        unreachable!()
    };
    nic.desired = desired.map(ip);
    PoolOp::Conflict {
        ip: ip(addr),
        mac: mac(n),
        nic: Some(nic),
    }
}

#[rstest]
#[case::the_address_becomes_the_mark_and_the_nic_moves_to_the_lowest_free(
    json!({"192.168.48.82": "aa:aa:aa:aa:aa:01"}),
    vec![declined(1, "192.168.48.82", None)],
    &["marked, moved to 192.168.48.83*"],
    &[("192.168.48.82", "CONFLICT"), ("192.168.48.83", "aa:aa:aa:aa:aa:01")],
    (2, 2)
)]
#[case::any_spelling_of_the_mac(
    json!({"192.168.48.82": "AA-AA-AA-AA-AA-01"}),
    vec![declined(1, "192.168.48.82", None)],
    &["marked, moved to 192.168.48.83*"],
    &[("192.168.48.82", "CONFLICT"), ("192.168.48.83", "aa:aa:aa:aa:aa:01")],
    (2, 2)
)]
#[case::another_macs_address_is_left_alone(
    json!({"192.168.48.82": "aa:aa:aa:aa:aa:09"}),
    vec![declined(1, "192.168.48.82", None)],
    &["not held"],
    &[("192.168.48.82", "aa:aa:aa:aa:aa:09")],
    (0, 4)
)]
#[case::a_report_handled_before_changes_nothing(
    json!({"192.168.48.82": "CONFLICT", "192.168.48.83": "aa:aa:aa:aa:aa:01"}),
    vec![declined(1, "192.168.48.82", None)],
    &["not held"],
    &[("192.168.48.82", "CONFLICT"), ("192.168.48.83", "aa:aa:aa:aa:aa:01")],
    (0, 4)
)]
#[case::a_nic_that_asks_for_the_declined_address_gets_none(
    json!({"192.168.48.82": "aa:aa:aa:aa:aa:01"}),
    vec![declined(1, "192.168.48.82", Some("192.168.48.82"))],
    &["marked, refused: designated ip 192.168.48.82 is already allocated"],
    &[("192.168.48.82", "CONFLICT")],
    (1, 3)
)]
#[case::a_nic_that_asks_for_another_address_gets_it(
    json!({"192.168.48.82": "aa:aa:aa:aa:aa:01"}),
    vec![declined(1, "192.168.48.82", Some("192.168.48.85"))],
    &["marked, moved to 192.168.48.85*"],
    &[("192.168.48.82", "CONFLICT"), ("192.168.48.85", "aa:aa:aa:aa:aa:01")],
    (2, 2)
)]
#[case::no_vmnetcfg_holds_the_mac_the_mark_alone(
    json!({"192.168.48.82": "aa:aa:aa:aa:aa:01"}),
    vec![PoolOp::Conflict { ip: ip("192.168.48.82"), mac: mac(1), nic: None }],
    &["marked"],
    &[("192.168.48.82", "CONFLICT")],
    (1, 3)
)]
#[case::a_full_pool_keeps_the_mark_and_refuses_the_nic(
    json!({"192.168.48.82": "aa:aa:aa:aa:aa:01", "192.168.48.83": "aa:aa:aa:aa:aa:02",
           "192.168.48.84": "aa:aa:aa:aa:aa:03", "192.168.48.85": "aa:aa:aa:aa:aa:04"}),
    vec![declined(1, "192.168.48.82", None)],
    &["marked, refused: no more ip addresses left in network default/net-48 ipam"],
    &[("192.168.48.82", "CONFLICT"), ("192.168.48.83", "aa:aa:aa:aa:aa:02"),
      ("192.168.48.84", "aa:aa:aa:aa:aa:03"), ("192.168.48.85", "aa:aa:aa:aa:aa:04")],
    (4, 0)
)]
#[case::a_later_nic_of_the_batch_never_gets_the_declined_address(
    json!({"192.168.48.82": "aa:aa:aa:aa:aa:01"}),
    vec![declined(1, "192.168.48.82", None), release(1, "192.168.48.82"), nic(2)],
    &["marked, moved to 192.168.48.83*", "released: false", "192.168.48.84*"],
    &[("192.168.48.82", "CONFLICT"), ("192.168.48.83", "aa:aa:aa:aa:aa:01"),
      ("192.168.48.84", "aa:aa:aa:aa:aa:02")],
    (3, 1)
)]
fn a_declined_address_becomes_the_conflict_mark_and_its_nic_moves(
    #[case] before: serde_json::Value,
    #[case] ops: Vec<PoolOp>,
    #[case] want: &[&str],
    #[case] after: &[(&str, &str)],
    #[case] counters: (i64, i64),
) {
    let mut p = pool(&before);
    let mut alloc = Allocator::rebuild(&p).expect("rebuilds");
    let outcomes = apply(&mut p, &mut alloc, &ops, now());
    assert_eq!(summary(&outcomes), want);
    let mut expected: BTreeMap<String, String> = after
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if any_changed(&outcomes) {
        // The refresh of a written batch adds the exclusion's mark.
        expected.insert("192.168.48.81".to_owned(), "EXCLUDED".to_owned());
    }
    assert_eq!(allocated(&p), expected);
    if any_changed(&outcomes) {
        let v4 = p
            .status
            .as_ref()
            .and_then(|s| s.ipv4.as_ref())
            .expect("ipv4");
        assert_eq!((v4.used, v4.available), counters, "the mark counts as used");
    }
    // What was written rebuilds to the same allocator: a restart keeps the address out of use.
    let rebuilt = Allocator::rebuild(&p).expect("rebuilds");
    assert_eq!(
        (rebuilt.ipam.used(), rebuilt.ipam.available()),
        (alloc.ipam.used(), alloc.ipam.available())
    );
    assert_eq!(rebuilt.address_of(&mac(1)), alloc.address_of(&mac(1)));
}

#[test]
fn once_the_operator_removes_the_mark_the_address_is_free_again() {
    let mut p = pool(&json!({"192.168.48.82": "aa:aa:aa:aa:aa:01"}));
    let mut alloc = Allocator::rebuild(&p).expect("rebuilds");
    apply(
        &mut p,
        &mut alloc,
        &[declined(1, "192.168.48.82", None)],
        now(),
    );
    let mut alloc = Allocator::rebuild(&p).expect("rebuilds");
    assert_eq!(
        summary(&apply(&mut p, &mut alloc, &[nic(2)], now())),
        ["192.168.48.84*"]
    );
    // kubectl patch ippool --subresource=status --type=json -p '[{"op":"remove",...}]'
    p.status
        .as_mut()
        .and_then(|s| s.ipv4.as_mut())
        .expect("ipv4")
        .allocated
        .remove("192.168.48.82");
    let mut alloc = Allocator::rebuild(&p).expect("rebuilds");
    assert_eq!(alloc.ipam.available(), 2, ".82 and .85");
    assert_eq!(
        summary(&apply(&mut p, &mut alloc, &[nic(3)], now())),
        ["192.168.48.82*"]
    );
}
