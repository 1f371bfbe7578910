//! The generated CRDs: checked-in YAML is current, and the schema has upstream's fields.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use vmdhcp_api::crd::{REGENERATE_COMMAND, crds, file_name, to_yaml};

fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds")
}

#[test]
fn checked_in_yaml_is_what_the_types_generate() {
    for crd in crds().unwrap() {
        let path = crd_dir().join(file_name(&crd));
        let generated = to_yaml(&crd).unwrap();
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} is stale or missing; regenerate it with `{REGENERATE_COMMAND}` (from the workspace root) \
             and commit the result",
            path.display()
        );
    }
}

#[test]
fn yaml_parses_back_into_the_same_crd() {
    for crd in crds().unwrap() {
        let yaml = to_yaml(&crd).unwrap();
        let parsed: CustomResourceDefinition = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(parsed, crd);
    }
}

/// One line per schema node: `path: facts`, sorted by path.
fn schema_lines(crd: &CustomResourceDefinition) -> Vec<String> {
    let version = &crd.spec.versions[0];
    let schema = serde_json::to_value(
        version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    let mut lines = Vec::new();
    walk(&schema, "", false, &mut lines);
    lines.sort();
    lines
}

fn walk(node: &Value, path: &str, required: bool, lines: &mut Vec<String>) {
    if !path.is_empty() {
        let mut facts = vec![node["type"].as_str().unwrap_or("?").to_owned()];
        if let Some(format) = node.get("format") {
            facts.push(format!("format={}", format.as_str().unwrap()));
        }
        for key in ["maxLength", "maxItems"] {
            if let Some(n) = node.get(key) {
                facts.push(format!("{key}={n}"));
            }
        }
        if required {
            facts.push("required".into());
        }
        for rule in node
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            facts.push(format!(
                "rule[{} => {}]",
                rule["rule"].as_str().unwrap(),
                rule["message"].as_str().unwrap()
            ));
        }
        lines.push(format!("{path}: {}", facts.join(" ")));
    }
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (name, child) in node
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        walk(child, &child_path, required.contains(&name.as_str()), lines);
    }
    if let Some(items) = node.get("items") {
        walk(items, &format!("{path}[]"), false, lines);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk(values, &format!("{path}{{}}"), false, lines);
    }
}

fn assert_fields(crd: &CustomResourceDefinition, expected: &str) {
    let mut expected: Vec<String> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    expected.sort();
    let got = schema_lines(crd);
    let missing: Vec<_> = expected.iter().filter(|l| !got.contains(l)).collect();
    let unexpected: Vec<_> = got.iter().filter(|l| !expected.contains(l)).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "schema of {} differs from upstream's field list\n  expected but not generated:\n    {}\n  generated but not expected:\n    {}",
        crd.spec.names.kind,
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n    "),
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n    "),
    );
}

/// Wrangler's `GenericCondition`, as both kinds embed it.
const CONDITIONS: &str = "
    status.conditions: array
    status.conditions[]: object
    status.conditions[].type: string required
    status.conditions[].status: string required
    status.conditions[].lastUpdateTime: string
    status.conditions[].lastTransitionTime: string
    status.conditions[].reason: string
    status.conditions[].message: string
";

/// Upstream's IPPool schema (docs/upstream-compat.md, "CRD schema"), field by field. Two deliberate
/// differences, marked: `spec` is required, and `pool.start`/`pool.end` carry no CEL rule.
const IPPOOL_FIELDS: &str = "
    apiVersion: string
    kind: string
    metadata: object
    spec: object required
    spec.networkName: string maxLength=64 required rule[self == oldSelf => NetworkName is immutable]
    spec.paused: boolean
    spec.ipv4Config: object rule[!has(oldSelf.router) || has(self.router) => Router is required once set]
    spec.ipv4Config.cidr: string required rule[self == oldSelf => CIDR is immutable]
    spec.ipv4Config.serverIP: string format=ipv4 required rule[self == oldSelf => ServerIP is immutable]
    spec.ipv4Config.pool: object required rule[!has(oldSelf.exclude) || has(self.exclude) => End is required once set]
    spec.ipv4Config.pool.start: string format=ipv4 required
    spec.ipv4Config.pool.end: string format=ipv4 required
    spec.ipv4Config.pool.exclude: array format=ipv4 rule[self == oldSelf => Exclude is immutable]
    spec.ipv4Config.pool.exclude[]: string
    spec.ipv4Config.router: string format=ipv4 rule[self == oldSelf => Router is immutable]
    spec.ipv4Config.dns: array format=ipv4 maxItems=3
    spec.ipv4Config.dns[]: string
    spec.ipv4Config.domainName: string
    spec.ipv4Config.domainSearch: array
    spec.ipv4Config.domainSearch[]: string
    spec.ipv4Config.ntp: array maxItems=4
    spec.ipv4Config.ntp[]: string
    spec.ipv4Config.leaseTime: integer
    status: object
    status.lastUpdate: string format=date-time
    status.ipv4: object
    status.ipv4.allocated: object
    status.ipv4.allocated{}: string
    status.ipv4.used: integer required
    status.ipv4.available: integer required
    status.agentPodRef: object
    status.agentPodRef.namespace: string
    status.agentPodRef.name: string
    status.agentPodRef.image: string
    status.agentPodRef.uid: string
";

/// Upstream's VirtualMachineNetworkConfig schema (docs/upstream-compat.md, "CRD schema"); `spec` required is
/// ours.
const VMNETCFG_FIELDS: &str = "
    apiVersion: string
    kind: string
    metadata: object
    spec: object required
    spec.vmName: string maxLength=64 required rule[self == oldSelf => VMName is immutable]
    spec.networkConfigs: array maxItems=4
    spec.networkConfigs[]: object
    spec.networkConfigs[].networkName: string maxLength=64 required
    spec.networkConfigs[].macAddress: string maxLength=17 required
    spec.networkConfigs[].ipAddress: string format=ipv4
    spec.paused: boolean
    status: object
    status.networkConfigs: array
    status.networkConfigs[]: object
    status.networkConfigs[].allocatedIPAddress: string
    status.networkConfigs[].macAddress: string
    status.networkConfigs[].networkName: string
    status.networkConfigs[].state: string
";

#[test]
fn ippool_schema_has_upstreams_fields() {
    assert_fields(&crds().unwrap()[0], &format!("{IPPOOL_FIELDS}{CONDITIONS}"));
}

#[test]
fn vmnetcfg_schema_has_upstreams_fields() {
    assert_fields(
        &crds().unwrap()[1],
        &format!("{VMNETCFG_FIELDS}{CONDITIONS}"),
    );
}

#[test]
fn names_columns_and_subresources_are_upstreams() {
    let crds = crds().unwrap();
    let summary = |crd: &CustomResourceDefinition| {
        let n = &crd.spec.names;
        let v = &crd.spec.versions[0];
        let columns: Vec<String> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| format!("{} {} {}", c.name, c.type_, c.json_path))
            .collect();
        (
            crd.metadata.name.clone().unwrap(),
            crd.spec.scope.clone(),
            (
                n.kind.clone(),
                n.list_kind.clone().unwrap(),
                n.plural.clone(),
                n.singular.clone().unwrap(),
            ),
            n.short_names.clone().unwrap(),
            (v.name.clone(), v.served, v.storage, crd.spec.versions.len()),
            v.subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some() && s.scale.is_none()),
            columns,
        )
    };
    let s = |v: &str| v.to_owned();
    assert_eq!(
        summary(&crds[0]),
        (
            s("ippools.network.harvesterhci.io"),
            s("Namespaced"),
            (s("IPPool"), s("IPPoolList"), s("ippools"), s("ippool")),
            vec![s("ippl"), s("ippls")],
            (s("v1alpha1"), true, true, 1),
            true,
            vec![
                s("NETWORK string .spec.networkName"),
                s("AVAILABLE integer .status.ipv4.available"),
                s("USED integer .status.ipv4.used"),
                s("REGISTERED string .status.conditions[?(@.type=='Registered')].status"),
                s("CACHEREADY string .status.conditions[?(@.type=='CacheReady')].status"),
                s("AGENTREADY string .status.conditions[?(@.type=='AgentReady')].status"),
                s("AGE date .metadata.creationTimestamp"),
            ],
        )
    );
    assert_eq!(
        summary(&crds[1]),
        (
            s("virtualmachinenetworkconfigs.network.harvesterhci.io"),
            s("Namespaced"),
            (
                s("VirtualMachineNetworkConfig"),
                s("VirtualMachineNetworkConfigList"),
                s("virtualmachinenetworkconfigs"),
                s("virtualmachinenetworkconfig")
            ),
            vec![s("vmnetcfg"), s("vmnetcfgs")],
            (s("v1alpha1"), true, true, 1),
            true,
            vec![
                s("VMNAME string .spec.vmName"),
                s("ALLOCATED string .status.conditions[?(@.type=='Allocated')].status"),
                s("DISABLED string .status.conditions[?(@.type=='Disabled')].status"),
                s("INSYNCED string .status.conditions[?(@.type=='InSynced')].status"),
                s("AGE date .metadata.creationTimestamp"),
            ],
        )
    );
}

#[test]
fn schema_has_no_generator_artefacts() {
    for crd in crds().unwrap() {
        let json = serde_json::to_string(&crd).unwrap();
        for artefact in [
            "\"description\"",
            "\"nullable\"",
            "\"default\"",
            "\"title\"",
            "int64",
            "int32",
        ] {
            assert!(
                !json.contains(artefact),
                "{} contains {artefact}",
                crd.spec.names.kind
            );
        }
    }
}
