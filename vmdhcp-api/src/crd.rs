//! The two CustomResourceDefinitions, generated from the types and shaped like upstream's.
//!
//! kube's derive gives the right names, short names, printer columns, status subresource,
//! field names, formats, length limits and CEL rules. What it adds or drops is corrected here,
//! in one visible place, so the YAML matches upstream's controller-gen output:
//!
//! - Rust doc comments become no `description` (they are written for Rust readers);
//! - `nullable`, `default`, `title` and integer `format`s (`int64`) are generator artefacts
//!   upstream's schema does not have (the API server prunes `null`s anyway);
//! - fields that deserialise leniently (see [`crate::ippool`]) get their `required` lists back;
//! - `apiVersion`, `kind` and `metadata` are declared, and `listKind` set, as upstream does.
//!
//! Deliberate differences from upstream's YAML: no descriptions at all; no CEL rules on
//! `pool.start`/`pool.end` (resize, see [`crate::ippool`]); `spec` is required at the root
//! (upstream's webhook rejected spec-less objects anyway, and typed clients need a spec).
//!
//! `deploy/crds/` holds the output of [`crds`] and [`to_yaml`], written by
//! `cargo run -p vmdhcp-api --bin crdgen`; a test fails when it is stale.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::Error;
use crate::ippool::IPPool;
use crate::vmnetcfg::VirtualMachineNetworkConfig;

/// The command that regenerates `deploy/crds/`.
pub const REGENERATE_COMMAND: &str = "cargo run -p vmdhcp-api --bin crdgen -- deploy/crds";

/// Object schemas whose `required` list the generator cannot know: the fields are required by
/// the API server but deserialise leniently in Rust. Paths are JSON-pointer-like, below
/// `openAPIV3Schema`.
const REQUIRED: &[(&str, &[&str])] = &[
    (
        "/properties/spec/properties/ipv4Config",
        &["cidr", "pool", "serverIP"],
    ),
    (
        "/properties/spec/properties/ipv4Config/properties/pool",
        &["end", "start"],
    ),
    ("/properties/status/properties/ipv4", &["available", "used"]),
];

/// Schema of a `metav1.Time` field (used through `#[schemars(schema_with)]`): an RFC 3339
/// string, as upstream declares it.
pub fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

/// Both CRDs, IPPool first, in upstream's shape.
///
/// # Errors
/// [`Error::Crd`] if a generated CRD cannot be reshaped (a bug: covered by tests).
///
/// ```
/// let crds = vmdhcp_api::crd::crds()?;
/// let names: Vec<_> = crds.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
/// assert_eq!(names, ["ippools.network.harvesterhci.io", "virtualmachinenetworkconfigs.network.harvesterhci.io"]);
/// # Ok::<(), vmdhcp_api::Error>(())
/// ```
pub fn crds() -> Result<Vec<CustomResourceDefinition>, Error> {
    Ok(vec![
        shape(IPPool::crd(), "IPPool")?,
        shape(
            VirtualMachineNetworkConfig::crd(),
            "VirtualMachineNetworkConfig",
        )?,
    ])
}

/// The file name upstream's chart uses for a CRD: `<group>_<plural>.yaml`.
///
/// ```
/// let crds = vmdhcp_api::crd::crds()?;
/// assert_eq!(vmdhcp_api::crd::file_name(&crds[0]), "network.harvesterhci.io_ippools.yaml");
/// # Ok::<(), vmdhcp_api::Error>(())
/// ```
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// The YAML document written to `deploy/crds/`, with a header saying how to regenerate it.
///
/// # Errors
/// [`Error::Crd`] if serialisation fails.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, Error> {
    let body = serde_saphyr::to_string(crd).map_err(|e| Error::Crd {
        kind: "CustomResourceDefinition",
        reason: e.to_string(),
    })?;
    Ok(format!(
        "# Generated from the vmdhcp-api types by `{REGENERATE_COMMAND}`. Do not edit.\n---\n{body}"
    ))
}

fn shape(
    mut crd: CustomResourceDefinition,
    kind: &'static str,
) -> Result<CustomResourceDefinition, Error> {
    let err = |reason: String| Error::Crd { kind, reason };
    crd.spec.names.list_kind = Some(format!("{kind}List"));
    let mut value = serde_json::to_value(&crd).map_err(|e| err(e.to_string()))?;
    let schema = value
        .pointer_mut("/spec/versions/0/schema/openAPIV3Schema")
        .ok_or_else(|| err("no openAPIV3Schema".into()))?;
    strip_artefacts(schema);
    for (path, names) in REQUIRED {
        if let Some(Value::Object(obj)) = schema.pointer_mut(path) {
            obj.insert("required".into(), json!(names));
        }
    }
    let props = schema
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| err("schema has no properties".into()))?;
    props.insert("apiVersion".into(), json!({ "type": "string" }));
    props.insert("kind".into(), json!({ "type": "string" }));
    props.insert("metadata".into(), json!({ "type": "object" }));
    serde_json::from_value(value).map_err(|e| err(e.to_string()))
}

/// Removes, recursively, what schemars adds and upstream's schema does not have.
fn strip_artefacts(schema: &mut Value) {
    let Value::Object(obj) = schema else { return };
    for key in ["description", "nullable", "default", "title"] {
        obj.remove(key);
    }
    if obj.get("type") == Some(&json!("integer")) {
        obj.remove("format");
    }
    for key in ["properties"] {
        if let Some(Value::Object(props)) = obj.get_mut(key) {
            props.values_mut().for_each(strip_artefacts);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = obj.get_mut(key) {
            strip_artefacts(sub);
        }
    }
}
