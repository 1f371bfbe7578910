//! Every admission rule, driven by AdmissionReview fixtures shaped like the API server's.
//!
//! `tests/fixtures/<case>.request.json` is the body the API server posts; the expected answer
//! is `<case>.response.json`, compared whole (uid echo, `apiVersion`, `allowed`, `status` with
//! code, reason, message and causes, base64 `patch`). Cases with a patch also have
//! `<case>.patch.json`, the decoded patch, which must apply to the request's object.
//! `cluster.json` is what the caches hold: IPPools, vmnetcfgs and NADs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use rstest::rstest;
use serde_json::Value;
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
use vmdhcp_webhook::admission::{self, Reply, Settings, Webhook};
use vmdhcp_webhook::cache::Caches;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cluster() -> Caches {
    let cluster = read(&fixtures().join("cluster.json"));
    let pools: Vec<IPPool> = serde_json::from_value(cluster["ippools"].clone()).unwrap();
    let cfgs: Vec<VirtualMachineNetworkConfig> =
        serde_json::from_value(cluster["vmnetcfgs"].clone()).unwrap();
    let nads = cluster["nads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|nad| {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(nad["metadata"]["labels"].clone()).unwrap();
            let meta = &nad["metadata"];
            (
                meta["namespace"].as_str().unwrap().to_owned(),
                meta["name"].as_str().unwrap().to_owned(),
                labels,
            )
        })
        .collect();
    Caches::from_objects(pools, cfgs, nads)
}

fn settings() -> Settings {
    Settings {
        service_cidr: Some("10.53.0.0/16".parse().unwrap()),
    }
}

fn answer(case: &str) -> (Value, Value) {
    let request_path = fixtures().join(format!("{case}.request.json"));
    let body = std::fs::read(&request_path).unwrap();
    let webhook = if case.starts_with("mutate-") {
        Webhook::Mutation
    } else {
        Webhook::Validation
    };
    let got = match admission::review(webhook, &body, &cluster(), settings()) {
        Reply::Review(review) => admission::to_wire(&review),
        Reply::BadRequest(message) => panic!("{case}: bad request: {message}"),
    };
    (read(&request_path), got)
}

#[rstest]
#[case::mutate_defaults("mutate-ippool-create-defaults")]
#[case::mutate_v1beta1_with_router("mutate-ippool-create-v1beta1-router")]
#[case::mutate_nothing_missing("mutate-ippool-create-complete")]
#[case::mutate_no_server_ip("mutate-ippool-create-no-server-ip")]
#[case::mutate_invalid_range("mutate-ippool-create-invalid-range")]
#[case::mutate_undecodable("mutate-ippool-create-undecodable")]
#[case::mutate_update_untouched("mutate-ippool-update-untouched")]
#[case::ippool_create_valid("validate-ippool-create-valid")]
#[case::ippool_start_outside("validate-ippool-create-start-outside")]
#[case::ippool_service_cidr("validate-ippool-create-service-cidr")]
#[case::ippool_nad_missing("validate-ippool-create-nad-missing")]
#[case::ippool_duplicate_network("validate-ippool-create-duplicate-network")]
#[case::ippool_several_violations("validate-ippool-create-several-violations")]
#[case::ippool_undecodable("validate-ippool-create-undecodable")]
#[case::ippool_widen_range("validate-ippool-update-widen-range")]
#[case::ippool_cidr_immutable("validate-ippool-update-cidr-immutable")]
#[case::ippool_shrink_over_allocation("validate-ippool-update-shrink-over-allocation")]
#[case::ippool_update_while_deleting("validate-ippool-update-while-deleting")]
#[case::ippool_delete_in_use("validate-ippool-delete-in-use")]
#[case::ippool_delete_in_use_by_network_name("validate-ippool-delete-in-use-by-network-name")]
#[case::ippool_delete_unused("validate-ippool-delete-unused")]
#[case::ippool_status_subresource("validate-ippool-status-subresource")]
#[case::vmnetcfg_create_valid("validate-vmnetcfg-create-valid")]
#[case::vmnetcfg_nad_missing("validate-vmnetcfg-create-nad-missing")]
#[case::vmnetcfg_ip_taken("validate-vmnetcfg-create-ip-taken")]
#[case::vmnetcfg_ip_outside_range("validate-vmnetcfg-update-ip-outside-range")]
#[case::vmnetcfg_ip_free("validate-vmnetcfg-update-ip-free")]
#[case::vmnetcfg_delete_not_checked("validate-vmnetcfg-delete-not-checked")]
fn fixture(#[case] case: &str) {
    let (request, got) = answer(case);
    let want = read(&fixtures().join(format!("{case}.response.json")));
    // Patches are compared decoded: key order inside the base64 is not part of the contract.
    let (got_decoded, want_decoded) = (decode_patch(&got), decode_patch(&want));
    assert_eq!(got_decoded, want_decoded, "{case}: decoded patch");
    let (got, want) = (without_patch(&got), without_patch(&want));
    assert_eq!(
        got,
        want,
        "{case}:\n got {}\nwant {}",
        serde_json::to_string_pretty(&got).unwrap(),
        serde_json::to_string_pretty(&want).unwrap()
    );
    // The uid and apiVersion are echoed from the request, not from the fixture.
    assert_eq!(got["response"]["uid"], request["request"]["uid"], "{case}");
    assert_eq!(got["apiVersion"], request["apiVersion"], "{case}");

    let patch_path = fixtures().join(format!("{case}.patch.json"));
    match got_decoded {
        None => assert!(!patch_path.exists(), "{case}: expected a patch"),
        Some(decoded) => {
            assert_eq!(got["response"]["patchType"], "JSONPatch", "{case}");
            assert_eq!(decoded, read(&patch_path), "{case}: decoded patch");
            // The patch applies to what the user sent, and leaves nothing to default.
            let mut object = request["request"]["object"].clone();
            let ops: json_patch::Patch = serde_json::from_value(decoded).unwrap();
            json_patch::patch(&mut object, &ops).unwrap();
            let patched: IPPool = serde_json::from_value(object).unwrap();
            assert!(!patched.spec.ipv4_config.server_ip.is_empty());
            assert!(
                vmdhcp_api::default::default_ippool(&patched)
                    .unwrap()
                    .0
                    .is_empty()
            );
        }
    }
}

/// The base64 `response.patch`, decoded (it must be a base64 string, as Go sends `[]byte`).
fn decode_patch(review: &Value) -> Option<Value> {
    let encoded = review["response"].get("patch")?;
    assert!(encoded.is_string(), "patch is not base64: {encoded}");
    let bytes: ByteString = serde_json::from_value(encoded.clone()).unwrap();
    Some(serde_json::from_slice(&bytes.0).unwrap())
}

fn without_patch(review: &Value) -> Value {
    let mut review = review.clone();
    if let Some(response) = review["response"].as_object_mut() {
        response.remove("patch");
    }
    review
}

/// Every fixture on disk is one of the cases above, so none is silently skipped.
#[test]
fn every_fixture_is_exercised() {
    let source = include_str!("admission.rs");
    let mut found = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(case) = name.strip_suffix(".request.json") {
            found += 1;
            assert!(
                source.contains(&format!("(\"{case}\")")),
                "{case} has no #[case]"
            );
            assert!(
                fixtures().join(format!("{case}.response.json")).exists(),
                "{case} has no response"
            );
        }
    }
    assert_eq!(found, 28);
}

/// The rules of §5 look at the request's objects, not at the cache: the cached net-48 has a
/// NAD, but the request's copy with a missing network is still refused.
#[test]
fn validation_reads_the_requests_object() {
    let (_, got) = answer("validate-ippool-create-nad-missing");
    assert_eq!(got["response"]["allowed"], false);
    assert_eq!(got["response"]["status"]["code"], 422);
}

/// Without the service CIDR setting the overlap is not checked (`--service-cidr ""`).
#[test]
fn service_cidr_check_follows_the_setting() {
    let body =
        std::fs::read(fixtures().join("validate-ippool-create-service-cidr.request.json")).unwrap();
    let Reply::Review(review) =
        admission::review(Webhook::Validation, &body, &cluster(), Settings::default())
    else {
        panic!("bad request")
    };
    assert!(review.response.unwrap().allowed);
}
