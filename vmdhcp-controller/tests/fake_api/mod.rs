//! An in-memory Kubernetes API server for in-process tests, generic over resources by URL.
//!
//! - Paths: `/api/v1/...` and `/apis/<group>/<version>/...`, namespaced
//!   (`namespaces/<ns>/<plural>[/<name>[/status]]`) and cluster-scoped, and lists across all
//!   namespaces (`/apis/<group>/<version>/<plural>`). Any plural exists: there is no discovery.
//! - One global resourceVersion; every write that changes an object bumps it and stores
//!   `metadata.resourceVersion`; creation sets `uid`, `creationTimestamp`, `generation`; a
//!   change outside `metadata` and `status` bumps `generation`. A write that changes nothing
//!   keeps the resourceVersion and emits no watch event, as the real API server.
//! - GET (404 `Status`), POST (409 `AlreadyExists`), PUT (409 `Conflict` on a stale
//!   resourceVersion; an empty one is unconditional), PATCH (`json-patch+json` with `test`
//!   ops — a `test` of `null` against a missing path passes, as in Kubernetes —,
//!   `merge-patch+json`, `apply-patch+yaml` as create-or-merge of a JSON body), DELETE
//!   (finalizers: `deletionTimestamp` is set and the object kept; removing the last finalizer of
//!   an object being deleted removes it).
//! - Kinds with a status subresource ([`STATUS_SUBRESOURCES`]): writes to the object ignore
//!   `status` (and creation drops it); `/status` writes change only `status`.
//! - LIST with `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-joined) and
//!   `fieldSelector` (`metadata.name`, `metadata.namespace`; `=`, `==`, `!=`); `limit` is ignored
//!   (everything, no `continue`).
//! - WATCH (`watch=true`): newline-delimited `{"type","object"}` events after the given
//!   resourceVersion (all current objects as `ADDED` first when it is empty or `0`), filtered
//!   by scope and selectors (an object leaving a selector is `DELETED` for that watch), kept
//!   open until `timeoutSeconds` or until the client goes away. Watches stream from a
//!   change log, woken by a `tokio::sync::watch` channel carrying the latest resourceVersion.
//!
//! Two transports share the state: [`start`] gives a [`kube::Client`] over
//! `tower_test::mock` (streaming bodies: `Client::new` accepts any response body type), and
//! [`Fake::kubeconfig`] serves plain HTTP on 127.0.0.1 and writes a kubeconfig for it, so that
//! code that builds its own client from flags (`run::run`) can be pointed at the fake.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use serde_json::{Value, json};

/// The response body of the fake: whole or streamed (watches).
pub type RespBody = UnsyncBoxBody<Bytes, Infallible>;

/// `(group, plural)` of the kinds that have a status subresource.
pub const STATUS_SUBRESOURCES: &[(&str, &str)] = &[
    ("network.harvesterhci.io", "ippools"),
    ("network.harvesterhci.io", "virtualmachinenetworkconfigs"),
    ("", "pods"),
];

/// Starts the fake: a client over an in-memory transport, and the handle to its state.
pub fn start() -> (kube::Client, Fake) {
    let (service, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<RespBody>>();
    let fake = Fake::default();
    let server = fake.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let fake = server.clone();
            // One task per request: watches stay open without blocking the others.
            tokio::spawn(async move {
                let (parts, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(http_body_util::Collected::to_bytes);
                let response = match body {
                    Ok(body) => fake.handle(
                        &parts.method,
                        &parts.uri,
                        content_type(&parts.headers).as_deref(),
                        &body,
                    ),
                    Err(e) => whole(400, &failure(400, "BadRequest", &format!("body: {e}"))),
                };
                send.send_response(response);
            });
        }
    });
    (kube::Client::new(service, "default"), fake)
}

fn content_type(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
}

/// A cloneable handle to the fake's shared state.
#[derive(Clone)]
pub struct Fake {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// The latest resourceVersion: wakes the watches.
    revision: tokio::sync::watch::Sender<u64>,
    /// The HTTP transport's address, once started.
    http: tokio::sync::Mutex<Option<SocketAddr>>,
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                revision: tokio::sync::watch::channel(0).0,
                http: tokio::sync::Mutex::new(None),
            }),
        }
    }
}

/// One request a client made.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Status code answered (200 for a watch).
    pub code: u16,
    /// Whether the request changed stored state.
    pub changed: bool,
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}{}{} -> {}{}",
            self.method,
            self.path,
            if self.query.is_empty() { "" } else { "?" },
            self.query,
            self.code,
            if self.changed { " (changed)" } else { "" }
        )
    }
}

impl Recorded {
    /// PUT, PATCH or POST.
    pub fn is_write(&self) -> bool {
        [Method::PUT, Method::PATCH, Method::POST].contains(&self.method)
    }

    /// Addressed to an Event resource (`events` or `events.k8s.io`).
    pub fn is_event(&self) -> bool {
        parse(&self.path).is_some_and(|t| t.plural == "events")
    }
}

#[derive(Default)]
struct State {
    revision: u64,
    uids: u64,
    /// resource (`plural` or `plural.group`) → `namespace/name` (`/name` when cluster-scoped) → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    log: Vec<Change>,
    requests: Vec<Recorded>,
    /// `resource: TYPE namespace/name@resourceVersion` of every event streamed to a watch.
    delivered: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ChangeType {
    Added,
    Modified,
    Deleted,
}

struct Change {
    revision: u64,
    resource: String,
    kind: ChangeType,
    object: Value,
    previous: Option<Value>,
}

/// What a path addresses.
#[derive(Debug, Clone)]
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl Target {
    fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn has_status(&self) -> bool {
        STATUS_SUBRESOURCES
            .iter()
            .any(|(g, p)| *g == self.group && *p == self.plural)
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace.as_deref().unwrap_or_default())
    }
}

fn parse(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => (String::new(), (*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => ((*group).to_owned(), (*version).to_owned(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some((*name).to_owned()), false),
        [plural, name, "status"] => (*plural, Some((*name).to_owned()), true),
        _ => return None,
    };
    Some(Target {
        group,
        version,
        plural: plural.to_owned(),
        namespace,
        name,
        status,
    })
}

/// The kind of objects of a plural, for lists and objects posted without one.
fn kind_of(plural: &str) -> String {
    match plural {
        "pods" => "Pod".into(),
        "configmaps" => "ConfigMap".into(),
        "ippools" => "IPPool".into(),
        "virtualmachinenetworkconfigs" => "VirtualMachineNetworkConfig".into(),
        "virtualmachines" => "VirtualMachine".into(),
        "network-attachment-definitions" => "NetworkAttachmentDefinition".into(),
        "customresourcedefinitions" => "CustomResourceDefinition".into(),
        "leases" => "Lease".into(),
        "events" => "Event".into(),
        "nodes" => "Node".into(),
        "namespaces" => "Namespace".into(),
        other => {
            let singular = other.strip_suffix('s').unwrap_or(other);
            let mut chars = singular.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_uppercase()
                    .chain(chars.filter(|c| *c != '-'))
                    .collect()
            })
        }
    }
}

fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn not_found(target: &Target, name: &str) -> (u16, Value) {
    (
        404,
        failure(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", target.resource()),
        ),
    )
}

fn whole(code: u16, body: &Value) -> Response<RespBody> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(
            http_body_util::Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default()))
                .boxed_unsync(),
        )
        .expect("response")
}

fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Which objects a list or watch wants.
#[derive(Debug, Clone, Default)]
struct Filter {
    resource: String,
    namespace: Option<String>,
    labels: Vec<(String, Op, String)>,
    fields: Vec<(String, Op, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Exists,
    NotExists,
}

fn requirements(selector: &str) -> Vec<(String, Op, String)> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            if let Some((k, v)) = r.split_once("!=") {
                (k.trim().to_owned(), Op::Ne, v.trim().to_owned())
            } else if let Some((k, v)) = r.split_once("==") {
                (k.trim().to_owned(), Op::Eq, v.trim().to_owned())
            } else if let Some((k, v)) = r.split_once('=') {
                (k.trim().to_owned(), Op::Eq, v.trim().to_owned())
            } else if let Some(k) = r.strip_prefix('!') {
                (k.trim().to_owned(), Op::NotExists, String::new())
            } else {
                (r.to_owned(), Op::Exists, String::new())
            }
        })
        .collect()
}

fn satisfies(value: Option<&str>, op: Op, want: &str) -> bool {
    match op {
        Op::Eq => value == Some(want),
        Op::Ne => value != Some(want),
        Op::Exists => value.is_some(),
        Op::NotExists => value.is_none(),
    }
}

impl Filter {
    fn new(target: &Target, params: &BTreeMap<String, String>) -> Self {
        Self {
            resource: target.resource(),
            namespace: target.namespace.clone(),
            labels: params
                .get("labelSelector")
                .map(|s| requirements(s))
                .unwrap_or_default(),
            fields: params
                .get("fieldSelector")
                .map(|s| requirements(s))
                .unwrap_or_default(),
        }
    }

    fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        if let Some(ns) = &self.namespace
            && meta["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        let labels_ok = self
            .labels
            .iter()
            .all(|(k, op, v)| satisfies(meta["labels"].get(k).and_then(Value::as_str), *op, v));
        let fields_ok = self.fields.iter().all(|(k, op, v)| {
            let value = match k.as_str() {
                "metadata.name" => meta["name"].as_str(),
                "metadata.namespace" => meta["namespace"].as_str(),
                _ => object
                    .pointer(&format!("/{}", k.replace('.', "/")))
                    .and_then(Value::as_str),
            };
            satisfies(value, *op, v)
        });
        labels_ok && fields_ok
    }
}

/// The object without `metadata.resourceVersion` and `managedFields`: equal means unchanged.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    object
}

/// Everything but `metadata` and `status`: a change bumps `generation`.
fn spec_part(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

impl State {
    fn bump(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn record(
        &mut self,
        resource: String,
        kind: ChangeType,
        object: Value,
        previous: Option<Value>,
    ) {
        self.log.push(Change {
            revision: self.revision,
            resource,
            kind,
            object,
            previous,
        });
    }

    fn list_matching(&self, filter: &Filter) -> Vec<Value> {
        self.objects
            .get(&filter.resource)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|o| filter.matches(o))
            .cloned()
            .collect()
    }

    fn create(&mut self, target: &Target, mut body: Value) -> (u16, Value, bool) {
        if !body.is_object() {
            return (
                400,
                failure(400, "BadRequest", "the body is not an object"),
                false,
            );
        }
        let name = match body["metadata"]["name"].as_str().filter(|n| !n.is_empty()) {
            Some(name) => name.to_owned(),
            None => match body["metadata"]["generateName"].as_str() {
                Some(prefix) => format!("{prefix}{:05x}", self.uids + 1),
                None => {
                    return (
                        422,
                        failure(422, "Invalid", "metadata.name: Required value"),
                        false,
                    );
                }
            },
        };
        let key = target.key(&name);
        let resource = target.resource();
        if self
            .objects
            .get(&resource)
            .is_some_and(|m| m.contains_key(&key))
        {
            return (
                409,
                failure(
                    409,
                    "AlreadyExists",
                    &format!("{resource} \"{name}\" already exists"),
                ),
                false,
            );
        }
        if target.has_status()
            && let Some(map) = body.as_object_mut()
        {
            map.remove("status");
        }
        self.uids += 1;
        let revision = self.bump();
        if body.get("apiVersion").is_none() {
            body["apiVersion"] = json!(target.api_version());
        }
        if body.get("kind").is_none() {
            body["kind"] = json!(kind_of(&target.plural));
        }
        let meta = &mut body["metadata"];
        meta["name"] = json!(name);
        if let Some(ns) = &target.namespace {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.uids));
        meta["resourceVersion"] = json!(revision.to_string());
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        if let Some(map) = meta.as_object_mut() {
            map.remove("deletionTimestamp");
            map.remove("deletionGracePeriodSeconds");
        }
        self.objects
            .entry(resource.clone())
            .or_default()
            .insert(key, body.clone());
        self.record(resource, ChangeType::Added, body.clone(), None);
        (201, body, true)
    }

    /// Stores `new` in place of `old` (both under `target`), with the API server's bookkeeping.
    fn update(&mut self, target: &Target, old: &Value, mut new: Value) -> (u16, Value, bool) {
        let name = target.name.clone().unwrap_or_default();
        let key = target.key(&name);
        let resource = target.resource();
        if !new.is_object() {
            return (
                400,
                failure(400, "BadRequest", "the body is not an object"),
                false,
            );
        }
        if new.get("metadata").is_none_or(|m| !m.is_object()) {
            new["metadata"] = json!({});
        }
        // Immutable and server-owned fields.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "name",
            "namespace",
        ] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(map) = new["metadata"].as_object_mut() {
                        map.remove(field);
                    }
                }
            }
        }
        for field in ["apiVersion", "kind"] {
            if new.get(field).is_none() {
                new[field] = old[field].clone();
            }
        }
        let deleting = old["metadata"].get("deletionTimestamp").is_some();
        if deleting && !has_finalizers(&new) {
            let revision = self.bump();
            new["metadata"]["resourceVersion"] = json!(revision.to_string());
            if let Some(m) = self.objects.get_mut(&resource) {
                m.remove(&key);
            }
            self.record(
                resource,
                ChangeType::Deleted,
                new.clone(),
                Some(old.clone()),
            );
            return (200, new, true);
        }
        if comparable(&new) == comparable(old) {
            return (200, old.clone(), false);
        }
        if spec_part(&new) != spec_part(old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        let revision = self.bump();
        new["metadata"]["resourceVersion"] = json!(revision.to_string());
        self.objects
            .entry(resource.clone())
            .or_default()
            .insert(key, new.clone());
        self.record(
            resource,
            ChangeType::Modified,
            new.clone(),
            Some(old.clone()),
        );
        (200, new, true)
    }

    fn get(&self, target: &Target, name: &str) -> Option<Value> {
        self.objects
            .get(&target.resource())
            .and_then(|m| m.get(&target.key(name)))
            .cloned()
    }

    fn conflict(target: &Target, name: &str) -> (u16, Value, bool) {
        (
            409,
            failure(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    target.resource()
                ),
            ),
            false,
        )
    }

    /// Keeps `status` or everything but `status` of `old`, as the subresource rules say.
    fn subresource_rules(target: &Target, old: &Value, mut new: Value) -> Value {
        if target.status {
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if merged["status"].is_null()
                && let Some(map) = merged.as_object_mut()
            {
                map.remove("status");
            }
            merged
        } else if target.has_status() {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            new
        } else {
            new
        }
    }

    fn replace(&mut self, target: &Target, body: Value) -> (u16, Value, bool) {
        let name = target.name.clone().unwrap_or_default();
        let Some(old) = self.get(target, &name) else {
            let (code, body) = not_found(target, &name);
            return (code, body, false);
        };
        let wanted = body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !wanted.is_empty() && Some(wanted) != old["metadata"]["resourceVersion"].as_str() {
            return Self::conflict(target, &name);
        }
        let new = Self::subresource_rules(target, &old, body);
        self.update(target, &old, new)
    }

    fn patch(&mut self, target: &Target, content_type: &str, body: &Value) -> (u16, Value, bool) {
        let name = target.name.clone().unwrap_or_default();
        let old = match self.get(target, &name) {
            Some(old) => old,
            None if content_type == "application/apply-patch+yaml" && !target.status => {
                let mut object = body.clone();
                object["metadata"]["name"] = json!(name);
                return self.create(target, object);
            }
            None => {
                let (code, body) = not_found(target, &name);
                return (code, body, false);
            }
        };
        let mut new = old.clone();
        match content_type {
            "application/json-patch+json" => {
                let Some(ops) = body.as_array() else {
                    return (
                        400,
                        failure(400, "BadRequest", "a JSON patch is an array"),
                        false,
                    );
                };
                // Kubernetes' `test` of null passes on a missing path; json-patch's fails.
                let ops: Vec<Value> = ops
                    .iter()
                    .filter(|op| {
                        !(op["op"] == "test"
                            && op["value"].is_null()
                            && op["path"]
                                .as_str()
                                .is_some_and(|p| new.pointer(p).is_none()))
                    })
                    .cloned()
                    .collect();
                let patch: json_patch::Patch = match serde_json::from_value(Value::Array(ops)) {
                    Ok(p) => p,
                    Err(e) => return (400, failure(400, "BadRequest", &e.to_string()), false),
                };
                if let Err(e) = json_patch::patch(&mut new, &patch) {
                    return (
                        422,
                        failure(422, "Invalid", &format!("the patch failed: {e}")),
                        false,
                    );
                }
            }
            "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/apply-patch+yaml" => json_patch::merge(&mut new, body),
            other => {
                return (
                    415,
                    failure(
                        415,
                        "UnsupportedMediaType",
                        &format!("the media type {other:?} is not supported"),
                    ),
                    false,
                );
            }
        }
        let wanted = new["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !wanted.is_empty() && Some(wanted) != old["metadata"]["resourceVersion"].as_str() {
            return Self::conflict(target, &name);
        }
        let new = Self::subresource_rules(target, &old, new);
        self.update(target, &old, new)
    }

    fn delete(&mut self, target: &Target) -> (u16, Value, bool) {
        let name = target.name.clone().unwrap_or_default();
        let Some(old) = self.get(target, &name) else {
            let (code, body) = not_found(target, &name);
            return (code, body, false);
        };
        let resource = target.resource();
        if has_finalizers(&old) {
            if old["metadata"].get("deletionTimestamp").is_some() {
                return (200, old, false);
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let revision = self.bump();
            new["metadata"]["resourceVersion"] = json!(revision.to_string());
            self.objects
                .entry(resource.clone())
                .or_default()
                .insert(target.key(&name), new.clone());
            self.record(resource, ChangeType::Modified, new.clone(), Some(old));
            return (200, new, true);
        }
        let mut gone = old.clone();
        let revision = self.bump();
        gone["metadata"]["resourceVersion"] = json!(revision.to_string());
        if let Some(m) = self.objects.get_mut(&resource) {
            m.remove(&target.key(&name));
        }
        self.record(resource, ChangeType::Deleted, gone.clone(), Some(old));
        (200, gone, true)
    }

    /// Watch events after `cursor` that `filter` wants.
    fn events_since(&self, filter: &Filter, cursor: u64) -> Vec<Value> {
        let start = self.log.partition_point(|c| c.revision <= cursor);
        self.log[start..]
            .iter()
            .filter(|c| c.resource == filter.resource)
            .filter_map(|c| {
                let now = filter.matches(&c.object);
                let before = c.previous.as_ref().is_some_and(|p| filter.matches(p));
                let kind = match (c.kind, before, now) {
                    (ChangeType::Added, _, true) | (ChangeType::Modified, false, true) => "ADDED",
                    (ChangeType::Modified, true, true) => "MODIFIED",
                    (ChangeType::Modified, true, false) | (ChangeType::Deleted, _, true) => {
                        "DELETED"
                    }
                    _ => return None,
                };
                Some(json!({"type": kind, "object": c.object}))
            })
            .collect()
    }
}

fn ndjson(events: &[Value]) -> Bytes {
    let mut out = Vec::new();
    for event in events {
        out.extend(serde_json::to_vec(event).unwrap_or_default());
        out.push(b'\n');
    }
    Bytes::from(out)
}

impl Fake {
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the watches after a write.
    fn publish(&self) {
        let revision = self.state().revision;
        self.inner.revision.send_replace(revision);
    }

    /// Answers one request (both transports).
    pub fn handle(
        &self,
        method: &Method,
        uri: &Uri,
        content_type: Option<&str>,
        body: &Bytes,
    ) -> Response<RespBody> {
        let path = uri.path().to_owned();
        let query = uri.query().unwrap_or_default().to_owned();
        let params = query_params(&query);
        let watching = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
        if method == Method::GET
            && watching
            && let Some(target) = parse(&path).filter(|t| t.name.is_none())
        {
            self.state().requests.push(Recorded {
                method: method.clone(),
                path,
                query,
                code: 200,
                changed: false,
            });
            return self.watch(&target, &params);
        }
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return whole(
                        400,
                        &failure(400, "BadRequest", &format!("body is not JSON: {e}")),
                    );
                }
            }
        };
        let (code, answer, changed) = self.answer(method, &path, &params, content_type, body);
        self.state().requests.push(Recorded {
            method: method.clone(),
            path,
            query,
            code,
            changed,
        });
        if changed {
            self.publish();
        }
        whole(code, &answer)
    }

    fn answer(
        &self,
        method: &Method,
        path: &str,
        params: &BTreeMap<String, String>,
        content_type: Option<&str>,
        body: Value,
    ) -> (u16, Value, bool) {
        let Some(target) = parse(path) else {
            return (
                404,
                failure(
                    404,
                    "NotFound",
                    &format!("the server could not find the requested resource ({path})"),
                ),
                false,
            );
        };
        let mut state = self.state();
        match (method.as_str(), target.name.as_deref()) {
            ("GET", Some(name)) => {
                if let Some(object) = state.get(&target, name) {
                    (200, object, false)
                } else {
                    let (code, body) = not_found(&target, name);
                    (code, body, false)
                }
            }
            ("GET", None) => {
                let filter = Filter::new(&target, params);
                let items = state.list_matching(&filter);
                let kind = items
                    .first()
                    .and_then(|o| o["kind"].as_str())
                    .map_or_else(|| kind_of(&target.plural), ToOwned::to_owned);
                (
                    200,
                    json!({"kind": format!("{kind}List"), "apiVersion": target.api_version(),
                           "metadata": {"resourceVersion": state.revision.to_string()}, "items": items}),
                    false,
                )
            }
            ("POST", None) => state.create(&target, body),
            ("PUT", Some(_)) => state.replace(&target, body),
            ("PATCH", Some(_)) => state.patch(&target, content_type.unwrap_or_default(), &body),
            ("DELETE", Some(_)) if !target.status => state.delete(&target),
            _ => (
                405,
                failure(
                    405,
                    "MethodNotAllowed",
                    &format!("{method} {path} is not supported"),
                ),
                false,
            ),
        }
    }

    fn watch(&self, target: &Target, params: &BTreeMap<String, String>) -> Response<RespBody> {
        let filter = Filter::new(target, params);
        let mut wake = self.inner.revision.subscribe();
        wake.borrow_and_update();
        let from = params.get("resourceVersion").cloned().unwrap_or_default();
        let (initial, cursor) = {
            let state = self.state();
            if from.is_empty() || from == "0" {
                let added: Vec<Value> = state
                    .list_matching(&filter)
                    .into_iter()
                    .map(|o| json!({"type": "ADDED", "object": o}))
                    .collect();
                (added, state.revision)
            } else {
                (Vec::new(), from.parse().unwrap_or(state.revision))
            }
        };
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|s| s.parse().ok())
            .map_or(Duration::from_secs(3600), Duration::from_secs);
        let deadline = tokio::time::Instant::now() + timeout;
        let fake = self.clone();
        let first = (!initial.is_empty()).then(|| ndjson(&initial));
        let stream = futures::stream::unfold(
            (fake, filter, cursor, wake, first),
            move |(fake, filter, mut cursor, mut wake, first)| async move {
                if let Some(bytes) = first {
                    return Some((bytes, (fake, filter, cursor, wake, None)));
                }
                loop {
                    wake.borrow_and_update();
                    let events = {
                        let mut state = fake.state();
                        let events = state.events_since(&filter, cursor);
                        cursor = state.revision;
                        for e in &events {
                            let o = &e["object"]["metadata"];
                            let line = format!(
                                "{}: {} {}/{}@{}",
                                filter.resource,
                                e["type"].as_str().unwrap_or_default(),
                                o["namespace"].as_str().unwrap_or_default(),
                                o["name"].as_str().unwrap_or_default(),
                                o["resourceVersion"].as_str().unwrap_or_default()
                            );
                            state.delivered.push(line);
                        }
                        events
                    };
                    if !events.is_empty() {
                        return Some((ndjson(&events), (fake, filter, cursor, wake, None)));
                    }
                    match tokio::time::timeout_at(deadline, wake.changed()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) | Err(_) => return None,
                    }
                }
            },
        )
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(StreamBody::new(stream).boxed_unsync())
            .expect("response")
    }

    // ---- helpers for tests (they bypass the request log) ----

    fn helper(
        &self,
        method: &Method,
        path: &str,
        content_type: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let (code, answer, changed) =
            self.answer(method, path, &BTreeMap::new(), content_type, body);
        if changed {
            self.publish();
        }
        (code, answer)
    }

    /// The object at `path`, if stored.
    pub fn get(&self, path: &str) -> Option<Value> {
        let (code, object) = self.helper(&Method::GET, path, None, Value::Null);
        (code == 200).then_some(object)
    }

    /// The objects of the collection at `path` (namespaced or across namespaces).
    pub fn list(&self, path: &str) -> Vec<Value> {
        let (_, list) = self.helper(&Method::GET, path, None, Value::Null);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Creates `object` in the collection at `path` as a client would; panics when refused.
    pub fn create(&self, path: &str, object: Value) -> Value {
        let (code, answer) = self.helper(&Method::POST, path, None, object);
        assert_eq!(code, 201, "create in {path}: {answer}");
        answer
    }

    /// Deletes the object at `path` as a client would; the status code.
    pub fn delete(&self, path: &str) -> u16 {
        self.helper(&Method::DELETE, path, None, Value::Null).0
    }

    /// Edits the stored object at `path` in place (status included: this is the kubelet or
    /// another controller writing), with a new resourceVersion and a watch event.
    pub fn modify(&self, path: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let target = parse(path).expect("an object path");
        let mut state = self.state();
        let name = target.name.clone().expect("an object path");
        let old = state
            .get(&target, &name)
            .unwrap_or_else(|| panic!("{path} not stored"));
        let mut new = old.clone();
        edit(&mut new);
        let (code, answer, _) = state.update(&target, &old, new);
        drop(state);
        self.publish();
        assert_eq!(code, 200, "modify {path}: {answer}");
        answer
    }

    /// Every event streamed to a watch so far: `resource: TYPE namespace/name@resourceVersion`.
    pub fn delivered(&self) -> Vec<String> {
        self.state().delivered.clone()
    }

    /// The current resourceVersion.
    pub fn revision(&self) -> u64 {
        self.state().revision
    }

    /// Every request clients made so far (helpers excluded).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// How many requests clients made so far: a mark for [`Self::writes_since`].
    pub fn mark(&self) -> usize {
        self.state().requests.len()
    }

    /// Writes (PUT, PATCH, POST; Events excluded) since `mark` to paths starting with `prefix`.
    pub fn writes_since(&self, mark: usize, prefix: &str) -> Vec<Recorded> {
        self.state().requests[mark..]
            .iter()
            .filter(|r| r.is_write() && !r.is_event() && r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Writes (PUT, PATCH, POST; Events excluded) so far to paths starting with `prefix`.
    pub fn count_writes(&self, prefix: &str) -> usize {
        self.writes_since(0, prefix).len()
    }

    /// Requests the fake could not route or did not support (404 on an unparsable path, 405,
    /// 415).
    pub fn unsupported(&self) -> Vec<Recorded> {
        self.state()
            .requests
            .iter()
            .filter(|r| parse(&r.path).is_none() || [405, 415].contains(&r.code))
            .cloned()
            .collect()
    }

    /// Serves the fake over plain HTTP on 127.0.0.1 (once; later calls return the same
    /// address).
    pub async fn serve_http(&self) -> SocketAddr {
        let mut http = self.inner.http.lock().await;
        if let Some(addr) = *http {
            return addr;
        }
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the fake API server");
        let addr = listener.local_addr().expect("local address");
        let fake = self.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let fake = fake.clone();
            async move {
                let (parts, body) = request.into_parts();
                let response = match axum::body::to_bytes(body, usize::MAX).await {
                    Ok(body) => fake.handle(
                        &parts.method,
                        &parts.uri,
                        content_type(&parts.headers).as_deref(),
                        &body,
                    ),
                    Err(e) => whole(400, &failure(400, "BadRequest", &format!("body: {e}"))),
                };
                response.map(axum::body::Body::new)
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *http = Some(addr);
        addr
    }

    /// A kubeconfig file for the HTTP transport (started if needed).
    pub async fn kubeconfig(&self) -> PathBuf {
        let addr = self.serve_http().await;
        let config = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": format!("http://{addr}")}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
            "current-context": "fake"
        });
        let path = std::env::temp_dir().join(format!(
            "vmdhcp-fake-api-{}-{}.kubeconfig",
            std::process::id(),
            addr.port()
        ));
        std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json"))
            .expect("write the kubeconfig");
        path
    }
}
