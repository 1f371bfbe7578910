use super::*;
use crate::cache::Caches;
use std::collections::BTreeMap;

use serde_json::json;

fn empty() -> Caches {
    Caches::from_objects(vec![], vec![], vec![])
}

fn reply_json(reply: Reply) -> Value {
    match reply {
        Reply::Review(review) => to_wire(&review),
        Reply::BadRequest(message) => panic!("unexpected bad request: {message}"),
    }
}

#[test]
fn garbage_is_a_bad_request_not_a_panic() {
    for body in [
        &b""[..],
        b"{",
        b"[]",
        b"{\"apiVersion\":\"admission.k8s.io/v1\"}",
        b"\xff\xfe",
    ] {
        match review(Webhook::Validation, body, &empty(), Settings::default()) {
            Reply::BadRequest(message) => assert!(!message.is_empty()),
            Reply::Review(r) => panic!("{body:?} answered {r:?}"),
        }
    }
}

#[test]
fn undecodable_object_with_uid_is_answered_in_kind() {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "object": 5}
    });
    let got = reply_json(review(
        Webhook::Validation,
        body.to_string().as_bytes(),
        &empty(),
        Settings::default(),
    ));
    assert_eq!(got["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(got["response"]["uid"], "u-1");
    assert_eq!(got["response"]["allowed"], false);
    assert_eq!(got["response"]["status"]["code"], 400);
    let message = got["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot decode the AdmissionReview: "),
        "{message}"
    );
}

#[test]
fn webhook_paths_are_upstreams() {
    assert_eq!(Webhook::Validation.path(), "/v1/webhook/validation");
    assert_eq!(Webhook::Mutation.path(), "/v1/webhook/mutation");
}

fn ippool_request(operation: &str, object: &Value, namespace: Option<&str>, name: &str) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "name": name, "namespace": namespace, "operation": operation,
            "kind": {"group": "network.harvesterhci.io", "version": "v1alpha1", "kind": "IPPool"},
            "resource": {"group": "network.harvesterhci.io", "version": "v1alpha1", "resource": "ippools"},
            "userInfo": {"username": "u"},
            "object": object, "oldObject": null
        }
    })
    .to_string()
    .into_bytes()
}

fn validated(body: &[u8], cluster: &Caches) -> Value {
    reply_json(review(
        Webhook::Validation,
        body,
        cluster,
        Settings::default(),
    ))
}

#[test]
fn bare_network_name_resolves_in_the_requests_namespace() {
    // The object omits its namespace; the request carries it. `net-48` must be looked up as
    // `team-a/net-48`, where the NAD exists, not in "" or "default".
    let cluster = Caches::from_objects(
        vec![],
        vec![],
        vec![("team-a".into(), "net-48".into(), BTreeMap::new())],
    );
    let object = json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "p"},
        "spec": {"networkName": "net-48", "ipv4Config": {"cidr": "192.168.48.0/24",
            "serverIP": "192.168.48.2", "pool": {"start": "192.168.48.10", "end": "192.168.48.20"}}}
    });
    let got = validated(
        &ippool_request("CREATE", &object, Some("team-a"), "p"),
        &cluster,
    );
    assert_eq!(got["response"]["allowed"], true, "{got}");
    let got = validated(
        &ippool_request("CREATE", &object, Some("team-b"), "p"),
        &cluster,
    );
    assert_eq!(
        got["response"]["status"]["message"],
        "cannot create IPPool team-b/p because network-attachment-definitions.k8s.cni.cncf.io \"net-48\" not found"
    );
}

#[test]
fn generate_name_objects_are_named_as_best_known() {
    let object = json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"generateName": "pool-", "namespace": "default"},
        "spec": {"networkName": "default/nope", "ipv4Config": {"cidr": "10.1.0.0/24"}}
    });
    let got = validated(
        &ippool_request("CREATE", &object, Some("default"), ""),
        &empty(),
    );
    let message = got["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot create IPPool default/ because "),
        "{message}"
    );
}

#[test]
fn other_groups_and_connect_pass_untouched() {
    let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}});
    let mut body: Value =
        serde_json::from_slice(&ippool_request("CREATE", &object, Some("default"), "x")).unwrap();
    body["request"]["kind"]["group"] = json!("");
    let got = validated(body.to_string().as_bytes(), &empty());
    assert_eq!(got["response"]["allowed"], true);
    body["request"]["kind"]["group"] = json!("network.harvesterhci.io");
    body["request"]["operation"] = json!("CONNECT");
    let got = validated(body.to_string().as_bytes(), &empty());
    assert_eq!(got["response"]["allowed"], true);
    assert!(got["response"].get("patch").is_none());
}

#[test]
fn delete_without_old_object_falls_back_to_the_cache() {
    let pool = vmdhcp_api::ippool::IPPool::test("default", "net-48");
    let cfg = VirtualMachineNetworkConfig::test("default", "vm-1")
        .with_nic("default/net-48", "52:54:00:00:00:01");
    let cluster = Caches::from_objects(vec![pool], vec![cfg], vec![]);
    let got = validated(
        &ippool_request("DELETE", &Value::Null, Some("default"), "net-48"),
        &cluster,
    );
    assert_eq!(got["response"]["status"]["code"], 409, "{got}");
    // Unknown to the cache too: nothing to protect.
    let got = validated(
        &ippool_request("DELETE", &Value::Null, Some("default"), "gone"),
        &cluster,
    );
    assert_eq!(got["response"]["allowed"], true);
}

fn vmnetcfg_request(operation: &str, object: &Value, old: &Value) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "name": "vm-1", "namespace": "default", "operation": operation,
            "kind": {"group": "network.harvesterhci.io", "version": "v1alpha1",
                     "kind": "VirtualMachineNetworkConfig"},
            "resource": {"group": "network.harvesterhci.io", "version": "v1alpha1",
                         "resource": "virtualmachinenetworkconfigs"},
            "userInfo": {"username": "u"},
            "object": object, "oldObject": old
        }
    })
    .to_string()
    .into_bytes()
}

fn vmnetcfg_object(nics: &Value) -> Value {
    json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
        "metadata": {"name": "vm-1", "namespace": "default"},
        "spec": {"vmName": "vm-1", "networkConfigs": nics}
    })
}

/// `default/net-a` served by `pools/pool-a` (names differ); the NADs carry no back-labels, or
/// stale ones, as before the controller has labelled them or after a pool was replaced.
fn unlabelled_cluster() -> Caches {
    let pool = vmdhcp_api::ippool::IPPool::test("pools", "pool-a")
        .with_network("default/net-a")
        .with_cidr("192.168.0.0/24")
        .with_server("192.168.0.2")
        .with_range("192.168.0.10", "192.168.0.20");
    let stale = BTreeMap::from([
        (
            "network.harvesterhci.io/ippool-namespace".to_owned(),
            "pools".to_owned(),
        ),
        (
            "network.harvesterhci.io/ippool-name".to_owned(),
            "pool-a".to_owned(),
        ),
    ]);
    Caches::from_objects(
        vec![pool],
        vec![],
        vec![
            ("default".into(), "net-a".into(), BTreeMap::new()),
            ("default".into(), "net-b".into(), stale),
        ],
    )
}

#[test]
fn a_nics_pool_is_found_by_network_name_not_by_nad_labels() {
    let cluster = unlabelled_cluster();
    // No labels on net-a: the desired address is still checked against pool-a.
    let object = vmnetcfg_object(
        &json!([{"networkName": "default/net-a", "macAddress": "52:54:00:00:00:01", "ipAddress": "10.0.0.9"}]),
    );
    let got = validated(&vmnetcfg_request("CREATE", &object, &Value::Null), &cluster);
    assert_eq!(
        got["response"]["status"]["message"],
        "cannot create VirtualMachineNetworkConfig default/vm-1 because ip address 10.0.0.9 is not within subnet 192.168.0.0/24",
        "{got}"
    );
    // net-b's labels name pool-a, which serves another network: net-b is unmanaged.
    let object = vmnetcfg_object(
        &json!([{"networkName": "default/net-b", "macAddress": "52:54:00:00:00:01", "ipAddress": "10.0.0.9"}]),
    );
    let got = validated(&vmnetcfg_request("CREATE", &object, &Value::Null), &cluster);
    assert_eq!(got["response"]["allowed"], true, "{got}");
}

#[test]
fn an_update_adding_a_nic_on_a_missing_nad_is_refused() {
    let cluster = unlabelled_cluster();
    let nic = json!({"networkName": "default/net-a", "macAddress": "52:54:00:00:00:01"});
    let old = vmnetcfg_object(&json!([nic]));
    let new = vmnetcfg_object(
        &json!([nic, {"networkName": "default/typo", "macAddress": "52:54:00:00:00:02"}]),
    );
    let got = validated(&vmnetcfg_request("UPDATE", &new, &old), &cluster);
    assert_eq!(got["response"]["status"]["code"], 422, "{got}");
    assert_eq!(
        got["response"]["status"]["message"],
        "cannot update VirtualMachineNetworkConfig default/vm-1 because network-attachment-definitions.k8s.cni.cncf.io \"typo\" not found"
    );
    assert_eq!(
        got["response"]["status"]["details"]["causes"][0]["field"],
        "spec.networkConfigs[1].networkName"
    );
}

#[test]
fn lease_times_upstream_accepted_are_admitted_odd_ones_with_a_warning() {
    let cluster = Caches::from_objects(
        vec![],
        vec![],
        vec![("default".into(), "net-48".into(), BTreeMap::new())],
    );
    let pool = |lease: i64| {
        json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"networkName": "default/net-48", "ipv4Config": {"cidr": "192.168.48.0/24",
                "serverIP": "192.168.48.2", "leaseTime": lease, "domainName": "",
                "pool": {"start": "192.168.48.10", "end": "192.168.48.20"}}}
        })
    };
    let got = validated(
        &ippool_request("CREATE", &pool(0), Some("default"), "p"),
        &cluster,
    );
    assert_eq!(got["response"]["allowed"], true, "{got}");
    assert!(got["response"].get("warnings").is_none(), "{got}");
    let got = validated(
        &ippool_request("CREATE", &pool(-1), Some("default"), "p"),
        &cluster,
    );
    assert_eq!(got["response"]["allowed"], true, "{got}");
    assert_eq!(
        got["response"]["warnings"],
        json!([
            "spec.ipv4Config.leaseTime: lease time -1 is not positive: leases last the default 31536000 seconds (one year)"
        ])
    );
}
