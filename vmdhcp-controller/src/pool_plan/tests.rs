//! Table tests of the IPPool plan: upstream's `DeployAgent`, `BuildCache`, `MonitorAgent` and
//! `OnChange` cases and ours.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use vmdhcp_api::condition::find;
use vmdhcp_api::consts::{
    ANNOTATION_HOLD_AGENT_UPGRADE, COND_AGENT_READY, COND_CACHE_READY, COND_REGISTERED,
    COND_STOPPED, LABEL_CLUSTER_NETWORK,
};

use super::*;
use crate::agent_pod::{AgentOptions, NetworkSetup};

const IMAGE: &str = "rancher/harvester-vm-dhcp-agent:v2";

fn settings() -> AgentSettings {
    AgentSettings {
        no_agent: false,
        dry_run: false,
        image: IMAGE.into(),
        namespace: "harvester-system".into(),
        service_account: "agent".into(),
        node_grace: Some(Duration::from_secs(300)),
        agent: AgentOptions::default(),
        orphan_grace: Some(Duration::from_secs(600)),
    }
}

fn pool(status: &serde_json::Value) -> IPPool {
    serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "net-48", "namespace": "default", "uid": "pool-uid"},
        "spec": {"networkName": "default/net-48", "ipv4Config": {
            "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77", "router": "192.168.48.1",
            "pool": {"start": "192.168.48.81", "end": "192.168.48.90", "exclude": ["192.168.48.81", "192.168.48.90"]}}},
        "status": status
    }))
    .expect("fixture IPPool")
}

fn nad(labels: &[(&str, &str)]) -> NadSeen {
    NadSeen::Found(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn labelled_nad() -> NadSeen {
    nad(&[
        (LABEL_CLUSTER_NETWORK, "mgmt"),
        (LABEL_IPPOOL_NAMESPACE, "default"),
        (LABEL_IPPOOL_NAME, "net-48"),
    ])
}

fn pod(uid: &str, image: &str, ready: bool, terminating: bool) -> Pod {
    let mut meta =
        json!({"name": "default-net-48-agent", "namespace": "harvester-system", "uid": uid});
    if terminating {
        meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    serde_json::from_value(json!({
        "metadata": meta,
        "spec": {"nodeName": "node-1", "containers": [{"name": "agent", "image": image}]},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .expect("fixture Pod")
}

fn healthy_node() -> NodeSeen {
    NodeSeen::Found(Box::new(
        serde_json::from_value(json!({"metadata": {"name": "node-1"}, "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
            .expect("node"),
    ))
}

/// What is seen when the NAD is labelled and `pod` runs on a healthy node.
fn with_pod(pod: Pod) -> Observed {
    Observed {
        nad: Some(labelled_nad()),
        pod: Some(pod),
        node: healthy_node(),
        ..Observed::default()
    }
}

fn with_ref(uid: &str, image: &str) -> serde_json::Value {
    json!({"agentPodRef": {"namespace": "harvester-system", "name": "default-net-48-agent", "uid": uid, "image": image}})
}

/// The plan before any action is carried out.
fn plan(pool: &IPPool, seen: &Observed, settings: &AgentSettings, now: Timestamp) -> Plan {
    super::plan(pool, seen, settings, &Done::default(), now)
}

fn now() -> Timestamp {
    "2026-01-01T01:00:00Z".parse().expect("time")
}

fn cond(plan: &Plan, type_: &str) -> (String, String) {
    let c = find(&plan.status.conditions, type_).unwrap_or_else(|| panic!("no {type_}"));
    (c.status.clone(), c.message.clone())
}

fn ok() -> (String, String) {
    ("True".into(), String::new())
}

fn err(message: &str) -> (String, String) {
    ("False".into(), message.into())
}

#[test]
fn a_new_pool_gets_its_agent_its_marks_and_its_counters() {
    let p = pool(&json!(null));
    let seen = Observed {
        nad: Some(labelled_nad()),
        ..Observed::default()
    };
    let plan = plan(&p, &seen, &settings(), now());
    let [PoolAction::CreatePod(created)] = plan.actions.as_slice() else {
        panic!("expected one pod creation: {:?}", plan.actions);
    };
    assert_eq!(created.name_any(), "default-net-48-agent");
    let r = plan.status.agent_pod_ref.as_ref().expect("ref recorded");
    assert_eq!(
        (r.name.as_str(), r.image.as_str(), r.uid.as_str()),
        ("default-net-48-agent", IMAGE, "")
    );
    assert_eq!(cond(&plan, COND_REGISTERED), ok());
    assert_eq!(cond(&plan, COND_CACHE_READY), ok());
    assert_eq!(
        cond(&plan, COND_AGENT_READY),
        err("agent pod default-net-48-agent not ready")
    );
    assert_eq!(cond(&plan, COND_STOPPED), ("False".into(), String::new()));
    let v4 = plan.status.ipv4.as_ref().expect("ipv4");
    assert_eq!((v4.used, v4.available), (0, 8));
    assert_eq!(
        v4.allocated,
        BTreeMap::from([
            ("192.168.48.81".to_owned(), "EXCLUDED".to_owned()),
            ("192.168.48.90".to_owned(), "EXCLUDED".to_owned())
        ])
    );
    assert!(plan.status.last_update.is_some());
}

#[test]
fn nad_problems_are_registered_errors_with_upstreams_messages() {
    let p = pool(&json!(null));
    let missing = Observed {
        nad: Some(NadSeen::Missing(
            "network-attachment-definitions.k8s.cni.cncf.io \"net-48\" not found".into(),
        )),
        ..Observed::default()
    };
    let plan1 = plan(&p, &missing, &settings(), now());
    assert_eq!(
        cond(&plan1, COND_REGISTERED),
        err("network-attachment-definitions.k8s.cni.cncf.io \"net-48\" not found")
    );
    assert!(plan1.actions.is_empty());
    let unlabelled = Observed {
        nad: Some(nad(&[])),
        ..Observed::default()
    };
    let plan2 = plan(&p, &unlabelled, &settings(), now());
    assert_eq!(
        cond(&plan2, COND_REGISTERED),
        err("could not find clusternetwork for nad default/net-48")
    );
    // The back-reference labels are written even so.
    assert!(
        matches!(plan2.actions.as_slice(), [PoolAction::LabelNad(l)] if l.get(LABEL_IPPOOL_NAME).map(String::as_str) == Some("net-48"))
    );
    assert_eq!(
        cond(&plan2, COND_AGENT_READY),
        err("agent for ippool default/net-48 is not deployed")
    );
}

#[test]
fn a_ready_agent_with_the_current_image_is_ready() {
    let p = pool(&with_ref("pod-uid", IMAGE));
    let seen = with_pod(pod("pod-uid", IMAGE, true, false));
    let plan = plan(&p, &seen, &settings(), now());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(cond(&plan, COND_REGISTERED), ok());
    assert_eq!(cond(&plan, COND_AGENT_READY), ok());
}

#[test]
fn a_controller_upgrade_replaces_the_agent_unless_held() {
    let p = pool(&with_ref("pod-uid", "rancher/harvester-vm-dhcp-agent:v1"));
    let seen = with_pod(pod(
        "pod-uid",
        "rancher/harvester-vm-dhcp-agent:v1",
        true,
        false,
    ));
    let upgraded = plan(&p, &seen, &settings(), now());
    assert_eq!(
        upgraded
            .status
            .agent_pod_ref
            .as_ref()
            .map(|r| r.image.as_str()),
        Some(IMAGE)
    );
    assert_eq!(
        upgraded.actions,
        [PoolAction::DeletePod {
            namespace: "harvester-system".into(),
            name: "default-net-48-agent".into(),
            force: false
        }]
    );
    assert_eq!(
        cond(&upgraded, COND_AGENT_READY),
        err("agent pod default-net-48-agent obsolete and purged")
    );

    let mut held = p.clone();
    held.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_HOLD_AGENT_UPGRADE.to_owned(),
        String::new(),
    )]));
    let kept = plan(&held, &seen, &settings(), now());
    assert_eq!(
        kept.status.agent_pod_ref.as_ref().map(|r| r.image.as_str()),
        Some("rancher/harvester-vm-dhcp-agent:v1")
    );
    assert!(kept.actions.is_empty());
    assert_eq!(cond(&kept, COND_AGENT_READY), ok());
}

#[test]
fn uid_mismatch_terminating_and_unready_pods() {
    let p = pool(&with_ref("old-uid", IMAGE));
    let other = with_pod(pod("new-uid", IMAGE, true, false));
    let plan1 = plan(&p, &other, &settings(), now());
    assert_eq!(
        cond(&plan1, COND_REGISTERED),
        err("agent pod default-net-48-agent uid mismatch")
    );
    assert_eq!(
        cond(&plan1, COND_AGENT_READY),
        err("agent pod default-net-48-agent obsolete and purged")
    );

    let p = pool(&with_ref("pod-uid", IMAGE));
    let dying = with_pod(pod("pod-uid", IMAGE, true, true));
    assert_eq!(
        cond(&plan(&p, &dying, &settings(), now()), COND_REGISTERED),
        err("agent pod default-net-48-agent marked for deletion")
    );

    let unready = with_pod(pod("pod-uid", IMAGE, false, false));
    assert_eq!(
        cond(&plan(&p, &unready, &settings(), now()), COND_AGENT_READY),
        err("agent pod default-net-48-agent not ready")
    );
}

#[test]
fn an_agent_on_a_lost_node_is_force_deleted() {
    let p = pool(&with_ref("pod-uid", IMAGE));
    let seen = Observed {
        nad: Some(labelled_nad()),
        pod: Some(pod("pod-uid", IMAGE, true, false)),
        node: NodeSeen::Missing,
        ..Observed::default()
    };
    let plan1 = plan(&p, &seen, &settings(), now());
    assert_eq!(
        plan1.actions,
        [PoolAction::DeletePod {
            namespace: "harvester-system".into(),
            name: "default-net-48-agent".into(),
            force: true
        }]
    );
    assert!(
        cond(&plan1, COND_AGENT_READY)
            .1
            .contains("node node-1 of agent pod default-net-48-agent no longer exists")
    );
    let mut off = settings();
    off.node_grace = None;
    assert!(
        plan(&p, &seen, &off, now()).actions.is_empty(),
        "replacement can be turned off"
    );
}

#[test]
fn an_unreferenced_pod_of_ours_is_adopted() {
    let p = pool(&json!(null));
    let seen = with_pod(pod("pod-uid", IMAGE, true, false));
    let plan = plan(&p, &seen, &settings(), now());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(
        plan.status.agent_pod_ref.as_ref().map(|r| r.uid.as_str()),
        Some("pod-uid")
    );
    assert_eq!(cond(&plan, COND_AGENT_READY), ok());
}

#[test]
fn pausing_deletes_the_agent_and_keeps_allocations_and_no_agent_reports_success() {
    let mut p = pool(
        &json!({"ipv4": {"allocated": {"192.168.48.84": "ca:70:82:e6:84:6e"}, "used": 1, "available": 7},
        "agentPodRef": {"namespace": "harvester-system", "name": "default-net-48-agent", "uid": "pod-uid", "image": IMAGE}}),
    );
    p.spec.paused = Some(true);
    let seen = with_pod(pod("pod-uid", IMAGE, true, false));
    let paused = plan(&p, &seen, &settings(), now());
    assert_eq!(
        paused.actions,
        [PoolAction::DeletePod {
            namespace: "harvester-system".into(),
            name: "default-net-48-agent".into(),
            force: false
        }]
    );
    assert!(paused.status.agent_pod_ref.is_none());
    let disabled = err("ippool default/net-48 was administratively disabled");
    for c in [COND_REGISTERED, COND_CACHE_READY, COND_AGENT_READY] {
        assert_eq!(cond(&paused, c), disabled);
    }
    assert_eq!(cond(&paused, COND_STOPPED), ok());
    assert_eq!(
        paused.status.ipv4,
        p.status.as_ref().and_then(|s| s.ipv4.clone()),
        "allocations kept"
    );

    let mut no_agent = settings();
    no_agent.no_agent = true;
    let running = pool(&json!(null));
    let plan = plan(
        &running,
        &Observed {
            nad: Some(labelled_nad()),
            ..Observed::default()
        },
        &no_agent,
        now(),
    );
    assert!(plan.actions.is_empty());
    assert_eq!(cond(&plan, COND_REGISTERED), ok());
    assert_eq!(cond(&plan, COND_AGENT_READY), ok());
}

#[test]
fn a_restart_rebuilds_an_identical_state() {
    // A status as written before the restart: replanning changes nothing, and the next
    // allocation is the one the old process would have made.
    let status = json!({
        "ipv4": {"allocated": {"192.168.48.81": "EXCLUDED", "192.168.48.82": "aa:aa:aa:aa:aa:01", "192.168.48.84": "aa:aa:aa:aa:aa:02", "192.168.48.90": "EXCLUDED"}, "used": 2, "available": 6},
        "agentPodRef": {"namespace": "harvester-system", "name": "default-net-48-agent", "uid": "pod-uid", "image": IMAGE}});
    let seen = with_pod(pod("pod-uid", IMAGE, true, false));
    let first = plan(&pool(&status), &seen, &settings(), now());
    let mut after = pool(&status);
    after.status = Some(first.status.clone());
    let second = plan(
        &after,
        &seen,
        &settings(),
        "2026-01-01T02:00:00Z".parse().expect("time"),
    );
    assert_eq!(second.status, first.status, "a second pass writes nothing");
    let mut ipam = second.ipam.expect("rebuilt");
    assert_eq!((ipam.used(), ipam.available()), (2, 6));
    assert_eq!(
        ipam.allocate(ipam::Strategy::LowestFree).expect("free"),
        "192.168.48.83".parse::<std::net::Ipv4Addr>().expect("ip")
    );
}

#[test]
fn a_status_that_does_not_rebuild_fails_cache_ready_naming_the_entry() {
    let p = pool(
        &json!({"ipv4": {"allocated": {"192.168.48.200": "aa:aa:aa:aa:aa:01"}, "used": 1, "available": 7}}),
    );
    let plan = plan(
        &p,
        &Observed {
            nad: Some(labelled_nad()),
            ..Observed::default()
        },
        &settings(),
        now(),
    );
    let (status, message) = cond(&plan, COND_CACHE_READY);
    assert_eq!(status, "False");
    assert!(message.contains("192.168.48.200"), "{message}");
    assert!(plan.ipam.is_none());
}

#[test]
fn orphans_are_allocations_no_vmnetcfg_owns_and_only_decided_ones_are_released() {
    let p = pool(
        &json!({"ipv4": {"allocated": {"192.168.48.82": "aa:aa:aa:aa:aa:01", "192.168.48.83": "AA:AA:AA:AA:AA:02", "192.168.48.81": "EXCLUDED"}, "used": 2, "available": 6}}),
    );
    let cfg: vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig = serde_json::from_value(json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
        "metadata": {"name": "vm-2", "namespace": "default"},
        "spec": {"vmName": "vm-2", "networkConfigs": [{"networkName": "net-48", "macAddress": "aa:aa:aa:aa:aa:02"}]}
    }))
    .expect("vmnetcfg");
    let found = orphans(&p, &[Arc::new(cfg)]);
    let ip = "192.168.48.82".parse::<std::net::Ipv4Addr>().expect("ip");
    assert_eq!(
        found,
        [(ip, "aa:aa:aa:aa:aa:01".to_owned())],
        "marks are never candidates"
    );
    let release = |ip: &str, mac: &str| gc::Release {
        ip: ip.parse().expect("ip"),
        mac: mac.into(),
        owner: gc::Owner {
            vmnetcfg: NamespacedName::new("default", "vm-1"),
            uid: "uid-1".into(),
        },
        gone_since: now(),
    };
    let plan = plan(
        &p,
        &Observed {
            nad: Some(labelled_nad()),
            // The second one changed hands since it was decided: not released.
            orphans: vec![
                release("192.168.48.82", "AA-AA-AA-AA-AA-01"),
                release("192.168.48.83", "aa:aa:aa:aa:aa:09"),
            ],
            ..Observed::default()
        },
        &settings(),
        now(),
    );
    assert_eq!(
        plan.released,
        [release("192.168.48.82", "AA-AA-AA-AA-AA-01")]
    );
    let v4 = plan.status.ipv4.as_ref().expect("ipv4");
    assert!(!v4.allocated.contains_key("192.168.48.82"));
    assert!(v4.allocated.contains_key("192.168.48.83"));
    assert_eq!((v4.used, v4.available), (1, 7));
}

#[test]
fn a_terminating_obsolete_agent_on_a_lost_node_is_still_force_deleted() {
    // The controller was upgraded while the node died: the old pod hangs in Terminating.
    let p = pool(&with_ref("pod-uid", "rancher/harvester-vm-dhcp-agent:v1"));
    let seen = Observed {
        node: NodeSeen::Missing,
        ..with_pod(pod(
            "pod-uid",
            "rancher/harvester-vm-dhcp-agent:v1",
            false,
            true,
        ))
    };
    let plan = plan(&p, &seen, &settings(), now());
    assert_eq!(
        plan.actions,
        [PoolAction::DeletePod {
            namespace: "harvester-system".into(),
            name: "default-net-48-agent".into(),
            force: true
        }]
    );
}

#[test]
fn a_pause_deletes_the_agent_where_the_reference_says_it_is() {
    let mut p = pool(
        &json!({"agentPodRef": {"namespace": "old-agents", "name": "default-net-48-agent", "uid": "pod-uid", "image": IMAGE}}),
    );
    p.spec.paused = Some(true);
    let plan = plan(
        &p,
        &with_pod(pod("pod-uid", IMAGE, true, false)),
        &settings(),
        now(),
    );
    assert_eq!(
        plan.actions,
        [PoolAction::DeletePod {
            namespace: "old-agents".into(),
            name: "default-net-48-agent".into(),
            force: false
        }]
    );
}

#[test]
fn nad_labels_carry_only_the_back_reference() {
    let seen = Observed {
        nad: Some(nad(&[(LABEL_CLUSTER_NETWORK, "mgmt"), ("other", "x")])),
        ..Observed::default()
    };
    let plan = plan(&pool(&json!(null)), &seen, &settings(), now());
    let labels = plan
        .actions
        .iter()
        .find_map(|a| match a {
            PoolAction::LabelNad(l) => Some(l.clone()),
            _ => None,
        })
        .expect("labels to write");
    assert_eq!(
        labels,
        BTreeMap::from([
            (LABEL_IPPOOL_NAMESPACE.to_owned(), "default".to_owned()),
            (LABEL_IPPOOL_NAME.to_owned(), "net-48".to_owned()),
        ]),
        "other labels are left to the NAD as it is when written"
    );
}

/// How the API server refused the agent Pod when its service account is missing.
const SA_REFUSAL: &str = "pods \"default-net-48-agent\" is forbidden: error looking up service account harvester-system/agent: serviceaccount \"agent\" not found";

/// One row of the table of failed (and successful) actions: what was read and done, and what
/// the status and the failures must then say.
struct Row {
    name: &'static str,
    pool: IPPool,
    seen: Observed,
    done: Done,
    registered: (String, String),
    agent_ready: (String, String),
    stopped: (String, String),
    /// `agentPodRef.uid` and `.image`, `None`: no reference.
    agent_ref: Option<(&'static str, &'static str)>,
    /// The Event reasons, in order.
    failures: Vec<&'static str>,
}

fn paused(status: &serde_json::Value) -> IPPool {
    let mut p = pool(status);
    p.spec.paused = Some(true);
    p
}

fn not_stopped() -> (String, String) {
    ("False".into(), String::new())
}

#[allow(
    clippy::too_many_lines,
    reason = "one table: each row reads on its own"
)]
fn rows() -> Vec<Row> {
    let labelled = || Observed {
        nad: Some(labelled_nad()),
        ..Observed::default()
    };
    let disabled = || err("ippool default/net-48 was administratively disabled");
    vec![
        Row {
            name: "create refused by admission: reference not recorded, not deployed",
            pool: pool(&json!(null)),
            seen: labelled(),
            done: Done {
                create_pod: Some(Err(SA_REFUSAL.into())),
                ..Done::default()
            },
            registered: err(SA_REFUSAL),
            agent_ready: err("agent for ippool default/net-48 is not deployed"),
            stopped: not_stopped(),
            agent_ref: None,
            failures: vec![REASON_AGENT_DEPLOY_FAILED],
        },
        Row {
            name: "create refused for a pod that went away: the earlier reference stays",
            pool: pool(&with_ref("old-uid", "rancher/harvester-vm-dhcp-agent:v1")),
            seen: labelled(),
            done: Done {
                create_pod: Some(Err(SA_REFUSAL.into())),
                ..Done::default()
            },
            registered: err(SA_REFUSAL),
            agent_ready: err("agent pod default-net-48-agent not ready"),
            stopped: not_stopped(),
            agent_ref: Some(("old-uid", "rancher/harvester-vm-dhcp-agent:v1")),
            failures: vec![REASON_AGENT_DEPLOY_FAILED],
        },
        Row {
            name: "create succeeded: the new pod's uid is recorded",
            pool: pool(&json!(null)),
            seen: labelled(),
            done: Done {
                create_pod: Some(Ok(pod("new-uid", IMAGE, false, false))),
                ..Done::default()
            },
            registered: ok(),
            agent_ready: err("agent pod default-net-48-agent not ready"),
            stopped: not_stopped(),
            agent_ref: Some(("new-uid", IMAGE)),
            failures: vec![],
        },
        Row {
            name: "obsolete pod not deleted: AgentReady quotes the API server",
            pool: pool(&with_ref("pod-uid", "rancher/harvester-vm-dhcp-agent:v1")),
            seen: with_pod(pod("pod-uid", "rancher/harvester-vm-dhcp-agent:v1", true, false)),
            done: Done {
                delete_pod: Some(Err("pods \"default-net-48-agent\" is forbidden: no".into())),
                ..Done::default()
            },
            registered: ok(),
            agent_ready: err("pods \"default-net-48-agent\" is forbidden: no"),
            stopped: not_stopped(),
            agent_ref: Some(("pod-uid", IMAGE)),
            failures: vec![REASON_AGENT_DELETE_FAILED],
        },
        Row {
            name: "obsolete pod deleted: purged",
            pool: pool(&with_ref("pod-uid", "rancher/harvester-vm-dhcp-agent:v1")),
            seen: with_pod(pod("pod-uid", "rancher/harvester-vm-dhcp-agent:v1", true, false)),
            done: Done {
                delete_pod: Some(Ok(())),
                ..Done::default()
            },
            registered: ok(),
            agent_ready: err("agent pod default-net-48-agent obsolete and purged"),
            stopped: not_stopped(),
            agent_ref: Some(("pod-uid", IMAGE)),
            failures: vec![],
        },
        Row {
            name: "NAD labels refused: an Event, the agent goes on",
            pool: pool(&json!(null)),
            seen: Observed {
                nad: Some(nad(&[(LABEL_CLUSTER_NETWORK, "mgmt")])),
                ..Observed::default()
            },
            done: Done {
                label_nad: Some(Err("network-attachment-definitions.k8s.cni.cncf.io \"net-48\" is forbidden: no update".into())),
                create_pod: Some(Ok(pod("new-uid", IMAGE, false, false))),
                ..Done::default()
            },
            registered: ok(),
            agent_ready: err("agent pod default-net-48-agent not ready"),
            stopped: not_stopped(),
            agent_ref: Some(("new-uid", IMAGE)),
            failures: vec![REASON_NAD_LABEL_FAILED],
        },
        Row {
            name: "NAD unreadable: Registered quotes the API server, no pod is created",
            pool: pool(&json!(null)),
            seen: Observed {
                nad: Some(NadSeen::Unreadable("network-attachment-definitions.k8s.cni.cncf.io \"net-48\" is forbidden: no get".into())),
                ..Observed::default()
            },
            done: Done::default(),
            registered: err("network-attachment-definitions.k8s.cni.cncf.io \"net-48\" is forbidden: no get"),
            agent_ready: err("agent for ippool default/net-48 is not deployed"),
            stopped: not_stopped(),
            agent_ref: None,
            failures: vec![REASON_NAD_READ_FAILED],
        },
        Row {
            name: "agent pod unreadable: both agent conditions quote the API server",
            pool: pool(&with_ref("pod-uid", IMAGE)),
            seen: Observed {
                nad: Some(labelled_nad()),
                pod_unreadable: Some("pods \"default-net-48-agent\" is forbidden: no get".into()),
                ..Observed::default()
            },
            done: Done::default(),
            registered: err("pods \"default-net-48-agent\" is forbidden: no get"),
            agent_ready: err("pods \"default-net-48-agent\" is forbidden: no get"),
            stopped: not_stopped(),
            agent_ref: Some(("pod-uid", IMAGE)),
            failures: vec![REASON_AGENT_READ_FAILED],
        },
        Row {
            name: "pause whose agent is not deleted: the reference stays, Stopped says why",
            pool: paused(&with_ref("pod-uid", IMAGE)),
            seen: with_pod(pod("pod-uid", IMAGE, true, false)),
            done: Done {
                delete_pod: Some(Err("etcdserver: request timed out".into())),
                ..Done::default()
            },
            registered: disabled(),
            agent_ready: disabled(),
            stopped: err("etcdserver: request timed out"),
            agent_ref: Some(("pod-uid", IMAGE)),
            failures: vec![REASON_AGENT_DELETE_FAILED],
        },
        Row {
            name: "pause whose agent is deleted: stopped",
            pool: paused(&with_ref("pod-uid", IMAGE)),
            seen: with_pod(pod("pod-uid", IMAGE, true, false)),
            done: Done {
                delete_pod: Some(Ok(())),
                ..Done::default()
            },
            registered: disabled(),
            agent_ready: disabled(),
            stopped: ok(),
            agent_ref: None,
            failures: vec![],
        },
    ]
}

#[test]
fn failed_actions_show_in_their_condition_and_never_stop_the_rest_of_the_status() {
    for row in rows() {
        let name = row.name;
        let plan = super::plan(&row.pool, &row.seen, &settings(), &row.done, now());
        assert!(
            plan.actions.is_empty(),
            "{name}: nothing is asked twice: {:?}",
            plan.actions
        );
        assert_eq!(
            cond(&plan, COND_REGISTERED),
            row.registered,
            "{name}: Registered"
        );
        assert_eq!(
            cond(&plan, COND_AGENT_READY),
            row.agent_ready,
            "{name}: AgentReady"
        );
        assert_eq!(cond(&plan, COND_STOPPED), row.stopped, "{name}: Stopped");
        assert_eq!(
            plan.status
                .agent_pod_ref
                .as_ref()
                .map(|r| (r.uid.as_str(), r.image.as_str())),
            row.agent_ref,
            "{name}: agentPodRef"
        );
        let reasons: Vec<&str> = plan.failures.iter().map(|f| f.reason).collect();
        assert_eq!(reasons, row.failures, "{name}: failures");
        for failure in &plan.failures {
            assert!(
                failure.note.contains("default-net-48") || failure.note.contains("net-48"),
                "{name}: the Event names the object: {}",
                failure.note
            );
        }
        if row.pool.is_paused() {
            assert_eq!(
                plan.status.ipv4,
                row.pool.status.as_ref().and_then(|s| s.ipv4.clone()),
                "{name}: allocations kept"
            );
        } else {
            assert_eq!(cond(&plan, COND_CACHE_READY), ok(), "{name}: CacheReady");
            let v4 = plan.status.ipv4.as_ref().expect("counters and marks");
            assert_eq!((v4.used, v4.available), (0, 8), "{name}: counters");
            assert_eq!(
                v4.allocated.get("192.168.48.81").map(String::as_str),
                Some("EXCLUDED"),
                "{name}: marks"
            );
        }
    }
}

#[test]
fn the_deploy_failure_event_quotes_the_api_server_verbatim() {
    let plan = super::plan(
        &pool(&json!(null)),
        &Observed {
            nad: Some(labelled_nad()),
            ..Observed::default()
        },
        &settings(),
        &Done {
            create_pod: Some(Err(SA_REFUSAL.into())),
            ..Done::default()
        },
        now(),
    );
    assert_eq!(
        plan.failures,
        [Failure {
            reason: REASON_AGENT_DEPLOY_FAILED,
            note: format!("create agent pod harvester-system/default-net-48-agent: {SA_REFUSAL}"),
        }]
    );
}

#[test]
fn every_action_is_asked_once_then_the_plan_settles() {
    // The glue's loop: carry out, record, plan again. Each kind of action is asked at most
    // once, so the loop ends with the status to write.
    let p = pool(&with_ref("pod-uid", "rancher/harvester-vm-dhcp-agent:v1"));
    let seen = Observed {
        nad: Some(nad(&[(LABEL_CLUSTER_NETWORK, "mgmt")])),
        ..with_pod(pod(
            "pod-uid",
            "rancher/harvester-vm-dhcp-agent:v1",
            true,
            false,
        ))
    };
    let mut done = Done::default();
    let mut rounds = 0;
    loop {
        let plan = super::plan(&p, &seen, &settings(), &done, now());
        if plan.actions.is_empty() {
            assert_eq!(
                cond(&plan, COND_AGENT_READY),
                err("agent pod default-net-48-agent obsolete and purged")
            );
            break;
        }
        rounds += 1;
        assert!(rounds <= 3, "the plan keeps asking: {:?}", plan.actions);
        for action in plan.actions {
            match action {
                PoolAction::LabelNad(_) => done.label_nad = Some(Ok(())),
                PoolAction::DeletePod { .. } => done.delete_pod = Some(Ok(())),
                PoolAction::CreatePod(_) => {
                    done.create_pod = Some(Ok(pod("new-uid", IMAGE, false, false)));
                }
                PoolAction::ApplyAgentNetwork(_) | PoolAction::DeleteAgentNetwork { .. } => {
                    done.agent_network = Some(Ok(()));
                }
            }
        }
    }
    assert_eq!(rounds, 1, "labels and deletion are asked together");
}

fn node_seen(ready: &str) -> NodeSeen {
    NodeSeen::Found(Box::new(
        serde_json::from_value(
            json!({"metadata": {"name": "node-1"}, "status": {"conditions": [
            {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        )
        .expect("node"),
    ))
}

fn node_lease(renewed: &str) -> Lease {
    serde_json::from_value(
        json!({"metadata": {"name": "node-1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": renewed}}),
    )
    .expect("lease")
}

#[test]
fn a_lost_node_is_fenced_by_its_lease_and_the_replacement_waits_until_the_pod_is_gone() {
    let p = pool(&with_ref("pod-uid", IMAGE));
    let on_node = |ready: &str, renewed: &str, terminating: bool| Observed {
        nad: Some(labelled_nad()),
        pod: Some(pod("pod-uid", IMAGE, true, terminating)),
        node: node_seen(ready),
        node_lease: Some(node_lease(renewed)),
        ..Observed::default()
    };
    // Not ready, but the kubelet renewed its Lease a minute ago: it can stop its Pods itself.
    let renewing = on_node("Unknown", "2026-01-01T00:59:00.000000Z", false);
    assert!(plan(&p, &renewing, &settings(), now()).actions.is_empty());
    // Not ready and the Lease expired 5 min 20 s ago (grace 5 min): fenced.
    let lost = on_node("Unknown", "2026-01-01T00:54:00.000000Z", false);
    let force = PoolAction::DeletePod {
        namespace: "harvester-system".into(),
        name: "default-net-48-agent".into(),
        force: true,
    };
    assert_eq!(plan(&p, &lost, &settings(), now()).actions, [force]);
    // Deleted, but the Pod object is still there (a finalizer): no replacement yet.
    let deleted = Done {
        delete_pod: Some(Ok(())),
        ..Done::default()
    };
    let same_pass = super::plan(&p, &lost, &settings(), &deleted, now());
    assert!(same_pass.actions.is_empty(), "{:?}", same_pass.actions);
    let terminating = on_node("Unknown", "2026-01-01T00:54:00.000000Z", true);
    let next_pass = super::plan(&p, &terminating, &settings(), &deleted, now());
    assert!(next_pass.actions.is_empty(), "{:?}", next_pass.actions);
    assert_eq!(
        cond(&next_pass, COND_REGISTERED),
        err("agent pod default-net-48-agent marked for deletion")
    );
    // Gone from the API server: the replacement is created.
    let gone = Observed {
        nad: Some(labelled_nad()),
        ..Observed::default()
    };
    let [PoolAction::CreatePod(_)] = plan(&p, &gone, &settings(), now()).actions.as_slice() else {
        panic!("the replacement once the old Pod is gone");
    };
    // Off (the default): never fenced, whatever the node says.
    let mut off = settings();
    off.node_grace = None;
    assert!(plan(&p, &lost, &off, now()).actions.is_empty());
}

fn static_ipam() -> AgentSettings {
    AgentSettings {
        agent: AgentOptions {
            network_setup: NetworkSetup::StaticIpam,
            ..AgentOptions::default()
        },
        ..settings()
    }
}

const BRIDGE: &str = r#"{"cniVersion":"0.3.1","name":"net-48","type":"bridge","bridge":"mgmt-br","vlan":48,"ipam":{}}"#;

fn the_copy() -> DynamicObject {
    agent_pod::agent_network(
        &NamespacedName::new("default", "net-48"),
        &NamespacedName::new("default", "net-48"),
        BRIDGE,
        "192.168.48.77".parse().expect("ip"),
        24,
        "harvester-system",
    )
    .expect("copy")
}

#[test]
fn static_ipam_writes_the_nad_copy_before_the_pod_that_attaches_it() {
    let p = pool(&json!(null));
    let seen = Observed {
        nad: Some(labelled_nad()),
        nad_config: Some(BRIDGE.into()),
        agent_network: Some(AgentNetworkSeen::Missing),
        ..Observed::default()
    };
    let first = plan(&p, &seen, &static_ipam(), now());
    let [PoolAction::ApplyAgentNetwork(copy)] = first.actions.as_slice() else {
        panic!("the copy alone first: {:?}", first.actions);
    };
    assert_eq!(**copy, the_copy());
    let written = Done {
        agent_network: Some(Ok(())),
        ..Done::default()
    };
    let second = super::plan(&p, &seen, &static_ipam(), &written, now());
    let [PoolAction::CreatePod(pod)] = second.actions.as_slice() else {
        panic!("then the Pod: {:?}", second.actions);
    };
    assert!(pod.spec.as_ref().expect("spec").init_containers.is_none());
    assert!(
        pod.annotations()[vmdhcp_api::consts::ANNOTATION_MULTUS_NETWORKS]
            .contains(r#""namespace":"harvester-system","name":"default-net-48-agent""#)
    );

    // Refused: Registered says so, a Warning Event, and no Pod.
    let refused = Done {
        agent_network: Some(Err("forbidden".into())),
        ..Done::default()
    };
    let failed = super::plan(&p, &seen, &static_ipam(), &refused, now());
    assert!(failed.actions.is_empty(), "{:?}", failed.actions);
    assert_eq!(cond(&failed, COND_REGISTERED), err("forbidden"));
    assert_eq!(failed.failures[0].reason, REASON_AGENT_NETWORK_FAILED);
    assert_eq!(
        failed.failures[0].note,
        "write network attachment definition harvester-system/default-net-48-agent: forbidden"
    );
}

#[test]
fn static_ipam_keeps_the_copy_in_step_and_refuses_a_nad_that_is_not_cni() {
    let p = pool(&with_ref("pod-uid", IMAGE));
    let running = Observed {
        nad_config: Some(BRIDGE.into()),
        agent_network: Some(AgentNetworkSeen::Found(Box::new(the_copy()))),
        ..with_pod(pod("pod-uid", IMAGE, true, false))
    };
    let steady = plan(&p, &running, &static_ipam(), now());
    assert!(steady.actions.is_empty(), "{:?}", steady.actions);
    assert_eq!(cond(&steady, COND_REGISTERED), ok());
    assert_eq!(cond(&steady, COND_AGENT_READY), ok());

    // The pool's NAD moved to VLAN 49: the copy follows; the running Pod is left alone.
    let moved = Observed {
        nad_config: Some(BRIDGE.replace("48,", "49,")),
        ..running.clone()
    };
    let rewritten = plan(&p, &moved, &static_ipam(), now());
    let [PoolAction::ApplyAgentNetwork(copy)] = rewritten.actions.as_slice() else {
        panic!("the copy is rewritten");
    };
    assert_eq!(agent_pod::nad_config(copy).expect("config")["vlan"], 49);

    let broken = Observed {
        nad_config: Some("not json".into()),
        ..running.clone()
    };
    let refused = plan(&p, &broken, &static_ipam(), now());
    assert!(refused.actions.is_empty());
    let (status, message) = cond(&refused, COND_REGISTERED);
    assert_eq!(status, "False");
    assert!(
        message.starts_with(
            "network attachment definition default/net-48: spec.config is not a CNI configuration"
        ),
        "{message}"
    );
    assert_eq!(refused.failures[0].reason, REASON_AGENT_NETWORK_FAILED);

    // Paused: the copy goes with the agent.
    let paused_pool = paused(&with_ref("pod-uid", IMAGE));
    let actions = plan(&paused_pool, &running, &static_ipam(), now()).actions;
    assert!(
        actions.contains(&PoolAction::DeleteAgentNetwork {
            namespace: "harvester-system".into(),
            name: "default-net-48-agent".into()
        }),
        "{actions:?}"
    );
}

#[test]
fn a_restart_never_flips_cache_ready_to_not_initialized() {
    // Deliberate difference (docs/upstream-compat.md, "Allocator state and restarts"):
    // upstream's restarted controller writes CacheReady=False/NotInitialized, then True, for
    // every pool, and vmnetcfgs fail `is not ready` in between. Here the allocator is rebuilt
    // from the status on every pass: a new process finds CacheReady True and leaves it.
    let status = json!({
        "ipv4": {"allocated": {"192.168.48.81": "EXCLUDED", "192.168.48.90": "EXCLUDED"}, "used": 0, "available": 8},
        "agentPodRef": {"namespace": "harvester-system", "name": "default-net-48-agent", "uid": "pod-uid", "image": IMAGE},
        "conditions": [{"type": "CacheReady", "status": "True", "lastUpdateTime": "2025-12-01T00:00:00Z"}]});
    let seen = with_pod(pod("pod-uid", IMAGE, true, false));
    let fresh = plan(&pool(&status), &seen, &settings(), now());
    let cache = find(&fresh.status.conditions, COND_CACHE_READY).expect("CacheReady");
    assert_eq!(
        (
            cache.status.as_str(),
            cache.reason.as_str(),
            cache.last_update_time.as_str()
        ),
        ("True", "", "2025-12-01T00:00:00Z"),
        "neither flipped nor touched"
    );
    // A NotInitialized the Go controller left behind is replaced by the rebuilt answer.
    let go = json!({"conditions": [{"type": "CacheReady", "status": "False", "reason": "NotInitialized"}]});
    let taken_over = plan(&pool(&go), &seen, &settings(), now());
    assert_eq!(cond(&taken_over, COND_CACHE_READY), ok());
}

#[test]
fn static_ipam_never_overwrites_or_deletes_a_nad_that_is_not_its_copy() {
    let mut foreign = the_copy();
    foreign.metadata.labels = Some(BTreeMap::from([("team".to_owned(), "net".to_owned())]));
    // Pool `default-net/48` maps to the same copy name as `default/net-48`.
    let mut other_pools = the_copy();
    other_pools.metadata.annotations = Some(BTreeMap::from([(
        agent_pod::ANNOTATION_AGENT_NETWORK_POOL.to_owned(),
        "default-net/48".to_owned(),
    )]));
    for (what, found) in [("someone else's", foreign), ("another pool's", other_pools)] {
        let seen = Observed {
            nad: Some(labelled_nad()),
            nad_config: Some(BRIDGE.into()),
            agent_network: Some(AgentNetworkSeen::Found(Box::new(found))),
            ..Observed::default()
        };
        let refused = plan(&pool(&json!(null)), &seen, &static_ipam(), now());
        assert!(refused.actions.is_empty(), "{what}: {:?}", refused.actions);
        assert_eq!(
            cond(&refused, COND_REGISTERED),
            err(
                "network attachment definition harvester-system/default-net-48-agent exists and is not the agent's copy for ippool default/net-48 (label network.harvesterhci.io/vm-dhcp-controller=agent-network, annotation network.harvesterhci.io/agent-network-ippool=default/net-48)"
            ),
            "{what}"
        );
        let paused = plan(&paused(&json!(null)), &seen, &static_ipam(), now());
        assert!(
            !paused
                .actions
                .iter()
                .any(|a| matches!(a, PoolAction::DeleteAgentNetwork { .. })),
            "{what}: {:?}",
            paused.actions
        );
    }
}

#[test]
fn a_pod_created_in_this_pass_is_recorded_after_the_status_write_conflicted() {
    // Pass: the old agent is gone, a new one is created, the status write conflicts (the cache
    // was behind this process's own previous write), the pool is read again: it still names
    // the old Pod. The new Pod is the one to record, not a UID mismatch to purge.
    let p = pool(&with_ref("old-uid", IMAGE));
    let new_pod = pod("new-uid", IMAGE, false, false);
    let seen = with_pod(new_pod.clone());
    let done = Done {
        create_pod: Some(Ok(new_pod)),
        ..Done::default()
    };
    let plan = super::plan(&p, &seen, &settings(), &done, now());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(cond(&plan, COND_REGISTERED), ok());
    assert_eq!(
        plan.status.agent_pod_ref.as_ref().map(|r| r.uid.as_str()),
        Some("new-uid")
    );
    // Without that creation, a Pod of another UID is a mismatch, as upstream.
    let stranger = super::plan(&p, &seen, &settings(), &Done::default(), now());
    assert_eq!(
        cond(&stranger, COND_REGISTERED),
        err("agent pod default-net-48-agent uid mismatch")
    );
}
