use std::net::Ipv4Addr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vmdhcp_api::conflict::{PoolRef, agent_event};

use super::*;
use crate::alloc::Allocated;

const MAC: &str = "02:00:00:00:00:01";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn mac() -> MacAddr {
    MAC.parse().expect("mac")
}

/// The agent's report: `mac()` declined 10.0.0.5 in ippool vms/net.
fn report() -> Event {
    agent_event(
        &PoolRef {
            namespace: "vms",
            name: "net",
            uid: Some("u1"),
        },
        &Conflict {
            ip: ip("10.0.0.5"),
            mac: mac(),
        },
        "",
        "vms-net-agent",
        std::time::SystemTime::UNIX_EPOCH,
    )
}

fn pools() -> Vec<Arc<IPPool>> {
    vec![
        Arc::new(IPPool::test("vms", "net")),
        Arc::new(IPPool::test("vms", "other")),
    ]
}

fn cfg(name: &str) -> VirtualMachineNetworkConfig {
    VirtualMachineNetworkConfig::test("vms", name)
}

fn owner(name: &str, mac_text: &str, desired: Option<&str>, recorded: Option<&str>) -> Owner {
    Owner {
        vmnetcfg: NamespacedName::new("vms", name),
        nic: NicRequest {
            mac_text: mac_text.to_owned(),
            mac: mac(),
            desired: desired.map(ip),
            previous: None,
        },
        recorded: recorded.map(ip),
    }
}

fn mark(owner: Option<Owner>) -> Step {
    Step::Mark {
        pool: NamespacedName::new("vms", "net"),
        conflict: Conflict {
            ip: ip("10.0.0.5"),
            mac: mac(),
        },
        owner,
    }
}

type EditEvent = fn(&mut Event);
type EditPools = fn(&mut Vec<Arc<IPPool>>);

fn deleting(mut cfg: VirtualMachineNetworkConfig) -> VirtualMachineNetworkConfig {
    cfg.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    cfg
}

fn as_posted(_: &mut Event) {}

fn no_annotations(e: &mut Event) {
    e.metadata.annotations = None;
}

fn as_listed(_: &mut Vec<Arc<IPPool>>) {}

fn pool_gone(p: &mut Vec<Arc<IPPool>>) {
    p.retain(|p| p.name_any() != "net");
}

fn handled(e: &mut Event) {
    e.metadata
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_CONFLICT_HANDLED.into(), "done".into());
}

fn about_a_vmnetcfg(e: &mut Event) {
    e.regarding.as_mut().expect("regarding").kind = Some("VirtualMachineNetworkConfig".into());
}

#[allow(
    clippy::ptr_arg,
    reason = "an EditPools, as the cases that remove a pool"
)]
fn full_of_marks(p: &mut Vec<Arc<IPPool>>) {
    let mut net = IPPool::test("vms", "net");
    for i in 0..MAX_CONFLICT_MARKS {
        net = net.with_allocated(&format!("10.0.1.{i}"), MARK_CONFLICT);
    }
    p[0] = Arc::new(net);
}

#[allow(
    clippy::ptr_arg,
    reason = "an EditPools, as the cases that remove a pool"
)]
fn one_mark_short(p: &mut Vec<Arc<IPPool>>) {
    let mut net = IPPool::test("vms", "net");
    for i in 1..MAX_CONFLICT_MARKS {
        net = net.with_allocated(&format!("10.0.1.{i}"), MARK_CONFLICT);
    }
    p[0] = Arc::new(net);
}

#[allow(
    clippy::ptr_arg,
    reason = "an EditPools, as the cases that remove a pool"
)]
fn pool_deleting(p: &mut Vec<Arc<IPPool>>) {
    let mut net = IPPool::test("vms", "net");
    net.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    p[0] = Arc::new(net);
}

#[rstest::rstest]
#[case::a_report_moves_the_nic_of_its_mac_on_the_pools_network(
    as_posted, as_listed,
    vec![
        cfg("vm-b").with_nic("vms/other", MAC),
        cfg("vm-a")
            .with_nic("vms/other", "02:00:00:00:00:02")
            .with_nic("net", "02-00-00-00-00-01")
            .with_status_nic("net", "02:00:00:00:00:01", "10.0.0.5", "Allocated"),
    ],
    true,
    mark(Some(owner("vm-a", "02-00-00-00-00-01", None, Some("10.0.0.5")))),
)]
#[case::a_nic_with_a_desired_address_keeps_asking_for_it(
    as_posted, as_listed,
    vec![cfg("vm-a").with_nic_ip("vms/net", MAC, "10.0.0.9")],
    true,
    mark(Some(owner("vm-a", MAC, Some("10.0.0.9"), None))),
)]
#[case::of_two_vmnetcfgs_with_the_mac_the_first_by_name(
    as_posted, as_listed,
    vec![cfg("vm-b").with_nic("vms/net", MAC), cfg("vm-a").with_nic("vms/net", MAC)],
    true,
    mark(Some(owner("vm-a", MAC, None, None))),
)]
#[case::no_vmnetcfg_has_the_mac_on_that_network_the_mark_alone(
    as_posted, as_listed,
    vec![cfg("vm-a").with_nic("vms/other", MAC)],
    true,
    mark(None),
)]
#[case::a_vmnetcfg_being_deleted_moves_nothing(
    as_posted, as_listed,
    vec![deleting(cfg("vm-a").with_nic("vms/net", MAC))],
    true,
    mark(None),
)]
#[case::a_pool_full_of_marks_takes_no_more(
    as_posted, full_of_marks, vec![cfg("vm-a").with_nic("vms/net", MAC)], true,
    Step::TooMany {
        pool: NamespacedName::new("vms", "net"),
        conflict: Conflict { ip: ip("10.0.0.5"), mac: mac() },
        marks: MAX_CONFLICT_MARKS,
    },
)]
#[case::one_mark_short_of_the_limit_still_moves(
    as_posted, one_mark_short, vec![cfg("vm-a").with_nic("vms/net", MAC)], true,
    mark(Some(owner("vm-a", MAC, None, None))),
)]
#[case::handled_already(handled, as_listed, vec![], true, Step::Ignore)]
#[case::the_controllers_own_event_on_a_vmnetcfg(about_a_vmnetcfg, as_listed, vec![], true, Step::Ignore)]
#[case::without_annotations(
    no_annotations, as_listed, vec![], true,
    Step::Unreadable(
        "no network.harvesterhci.io/conflict-ip and network.harvesterhci.io/conflict-mac annotations"
            .into(),
    ),
)]
#[case::caches_still_listing(as_posted, as_listed, vec![], false, Step::WaitForCaches)]
#[case::the_pool_is_gone(
    as_posted, pool_gone, vec![], true,
    Step::PoolGone(NamespacedName::new("vms", "net")),
)]
#[case::the_pool_is_being_deleted(
    as_posted, pool_deleting, vec![], true,
    Step::PoolGone(NamespacedName::new("vms", "net")),
)]
fn what_an_event_asks_for(
    #[case] edit_event: EditEvent,
    #[case] edit_pools: EditPools,
    #[case] cfgs: Vec<VirtualMachineNetworkConfig>,
    #[case] synced: bool,
    #[case] want: Step,
) {
    let mut event = report();
    edit_event(&mut event);
    let mut pools = pools();
    edit_pools(&mut pools);
    let cfgs: Vec<_> = cfgs.into_iter().map(Arc::new).collect();
    assert_eq!(decide(&event, &pools, &cfgs, synced), want);
}

#[test]
fn what_is_said_about_each_outcome() {
    let pool = NamespacedName::new("vms", "net");
    let conflict = Conflict {
        ip: ip("10.0.0.5"),
        mac: mac(),
    };
    let head = "address 10.0.0.5 of mac 02:00:00:00:00:01 is in use by another host (the client \
                declined it): marked CONFLICT in ippool vms/net";
    let cases = [
        (
            Marked::NotHeld,
            "ippool vms/net no longer allocates 10.0.0.5 to mac 02:00:00:00:00:01 (released, \
             moved or marked before); nothing to do"
                .to_owned(),
            String::new(),
        ),
        (
            Marked::Marked(None),
            "marked CONFLICT; no vmnetcfg has mac 02:00:00:00:00:01".to_owned(),
            head.to_owned(),
        ),
        (
            Marked::Marked(Some(Ok(Allocated {
                ip: ip("10.0.0.6"),
                new: true,
            }))),
            "marked CONFLICT; mac 02:00:00:00:00:01 moved to 10.0.0.6".to_owned(),
            format!("{head}; the NIC moves to 10.0.0.6"),
        ),
        (
            Marked::Marked(Some(Err(
                "designated ip 10.0.0.5 is already allocated".into()
            ))),
            "marked CONFLICT; mac 02:00:00:00:00:01 got no other address: designated ip \
             10.0.0.5 is already allocated"
                .to_owned(),
            format!(
                "{head}; the NIC got no other address: designated ip 10.0.0.5 is already allocated"
            ),
        ),
    ];
    for (marked, handled, warning) in cases {
        assert_eq!(
            describe(&pool, &conflict, &marked),
            (handled, warning),
            "{marked:?}"
        );
    }
}
