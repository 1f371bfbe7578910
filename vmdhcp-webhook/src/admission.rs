//! Admission decisions: an `AdmissionReview` body in, an `AdmissionReview` out. No IO.
//!
//! Routing:
//!
//! | webhook | resource | operations | rule |
//! |---|---|---|---|
//! | mutation | `ippools` | CREATE | [`default_ippool`]: JSON patch, `patchType: JSONPatch` |
//! | validation | `ippools` | CREATE, UPDATE, DELETE | [`vmdhcp_api::validate::ippool`] |
//! | validation | `virtualmachinenetworkconfigs` | CREATE, UPDATE | [`vmdhcp_api::validate::vmnetcfg`] |
//!
//! Both validating webhooks of the configuration (see [`registration`](crate::registration))
//! post to the validation path; which requests reach it at all is decided there.
//!
//! Anything else (subresources, other kinds, CONNECT) is allowed untouched: the webhook
//! configurations never send it, and refusing what we do not understand would block the
//! cluster over a hand-edited rule.
//!
//! # Denials
//! `allowed: false` with `status.message` in upstream's words
//! ([`admission_denied`]: `cannot <op> <Kind> <ns>/<name> because <cause>`), every violation's
//! field in `status.details.causes`, and a 4xx code instead of upstream's 500. The API server
//! passes code, reason and causes on and prefixes the message with `admission webhook "<name>"
//! denied the request: `; `kubectl` prints a 422 `Invalid` from the causes alone (`The IPPool
//! "x" is invalid: <field>: <cause>`), other codes as `Error from server (<reason>): <message>`.
//!
//! | code | reason | when |
//! |---|---|---|
//! | 400 | `BadRequest` | the review or its object cannot be decoded |
//! | 409 | `Conflict` | deleting an IPPool that vmnetcfgs still use |
//! | 422 | `Invalid` | a field value is refused (validation, or defaulting impossible) |
//!
//! # Warnings
//! An admitted IPPool may carry `response.warnings` ([`validate::ippool::warnings`]), each
//! `<field>: <advice>`; the API server sends them as `Warning` headers and `kubectl` prints
//! them as `Warning: …`.
//!
//! v1 and v1beta1 reviews have the same shape; the answer echoes the request's `apiVersion`.

use std::sync::Arc;

use ipnet::Ipv4Net;
use k8s_openapi::ByteString;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOperation,
};
use kube::core::response::{StatusCause, StatusDetails, reason};
use kube::core::{DynamicObject, Status, TypeMeta};
use serde::de::DeserializeOwned;
use serde_json::Value;
use vmdhcp_api::consts::{GROUP, KIND_IPPOOL, KIND_VMNETCFG, PLURAL_IPPOOL, PLURAL_VMNETCFG};
use vmdhcp_api::default::default_ippool;
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::message::{Operation, admission_denied};
use vmdhcp_api::network::NamespacedName;
use vmdhcp_api::validate::vmnetcfg::Network;
use vmdhcp_api::validate::{self, Violation};
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;

/// Path of the validating webhook.
pub const PATH_VALIDATION: &str = vmdhcp_api::consts::WEBHOOK_PATH_VALIDATION;
/// Path of the mutating webhook.
pub const PATH_MUTATION: &str = vmdhcp_api::consts::WEBHOOK_PATH_MUTATION;

/// Which webhook a review was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    /// `/v1/webhook/validation`.
    Validation,
    /// `/v1/webhook/mutation`.
    Mutation,
}

impl Webhook {
    /// The HTTP path the webhook is served on.
    pub fn path(self) -> &'static str {
        match self {
            Self::Validation => PATH_VALIDATION,
            Self::Mutation => PATH_MUTATION,
        }
    }
}

/// The cluster as the validators need to see it: a read-only view of cached objects.
///
/// Implemented by [`Caches`](crate::cache::Caches) over kube-runtime reflector stores.
pub trait Cluster {
    /// Whether a NetworkAttachmentDefinition exists.
    fn nad_exists(&self, nad: &NamespacedName) -> bool;
    /// One IPPool.
    fn ippool(&self, pool: &NamespacedName) -> Option<Arc<IPPool>>;
    /// Every IPPool.
    fn ippools(&self) -> Vec<Arc<IPPool>>;
    /// Every VirtualMachineNetworkConfig.
    fn vmnetcfgs(&self) -> Vec<VirtualMachineNetworkConfig>;
}

/// Settings from the command line that decisions depend on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// `--service-cidr`: IPPools must not overlap it; `None` skips the check.
    pub service_cidr: Option<Ipv4Net>,
}

/// What to send back.
#[derive(Debug, Clone)]
pub enum Reply {
    /// HTTP 200 with this review (allowed or denied).
    Review(Box<AdmissionReview<DynamicObject>>),
    /// HTTP 400: the body is not a review that can be answered (no `request.uid` to echo).
    BadRequest(String),
}

/// The review as JSON for the wire.
///
/// kube serialises `response.patch` (`Vec<u8>`) as an array of numbers; Go's `[]byte`, which
/// the API server decodes it into, is base64 on the wire, and that is what Go webhooks send.
/// The API server happens to accept both; we send what upstream sent.
pub fn to_wire(review: &AdmissionReview<DynamicObject>) -> Value {
    let mut value = serde_json::to_value(review).unwrap_or_else(|e| {
        // Only map keys that are not strings fail to serialise, and a review has none.
        serde_json::json!({ "error": e.to_string() })
    });
    if let Some(patch) = review.response.as_ref().and_then(|r| r.patch.clone())
        && let Some(slot) = value.pointer_mut("/response/patch")
    {
        *slot = serde_json::to_value(ByteString(patch)).unwrap_or(Value::Null);
    }
    value
}

/// Answers one `AdmissionReview` body.
///
/// Never panics on the body: what cannot be decoded is answered with a 400 denial when the
/// request's `uid` can be found, and with [`Reply::BadRequest`] otherwise.
///
/// ```
/// use vmdhcp_webhook::admission::{Reply, Settings, Webhook, review, to_wire};
/// use vmdhcp_webhook::cache::Caches;
///
/// let body = serde_json::json!({
///     "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
///     "request": {
///         "uid": "705ab4f5", "operation": "DELETE", "name": "net-48", "namespace": "default",
///         "kind": {"group": "network.harvesterhci.io", "version": "v1alpha1", "kind": "IPPool"},
///         "resource": {"group": "network.harvesterhci.io", "version": "v1alpha1", "resource": "ippools"},
///         "userInfo": {"username": "admin"},
///         "oldObject": {"apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
///             "metadata": {"name": "net-48", "namespace": "default"},
///             "spec": {"networkName": "default/net-48", "ipv4Config": {"cidr": "192.168.48.0/24"}}}
///     }
/// });
/// // Nothing uses the pool: the deletion is allowed.
/// let cluster = Caches::from_objects(vec![], vec![], vec![]);
/// let Reply::Review(answer) =
///     review(Webhook::Validation, body.to_string().as_bytes(), &cluster, Settings::default())
/// else {
///     panic!("a review")
/// };
/// let wire = to_wire(&answer);
/// assert_eq!(wire["response"]["uid"], "705ab4f5");
/// assert_eq!(wire["response"]["allowed"], true);
/// ```
pub fn review(webhook: Webhook, body: &[u8], cluster: &impl Cluster, settings: Settings) -> Reply {
    let parsed: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(e) => return undecodable_review(body, &e.to_string()),
    };
    let request: AdmissionRequest<DynamicObject> = match parsed.try_into() {
        Ok(request) => request,
        Err(_) => return Reply::BadRequest("the AdmissionReview has no request".to_owned()),
    };
    Reply::Review(Box::new(
        decide(webhook, &request, cluster, settings).into_review(),
    ))
}

/// The response to one decoded request.
pub fn decide(
    webhook: Webhook,
    req: &AdmissionRequest<DynamicObject>,
    cluster: &impl Cluster,
    settings: Settings,
) -> AdmissionResponse {
    let allow = AdmissionResponse::from(req);
    if req.kind.group != GROUP || req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        return allow;
    }
    let Some(op) = operation(&req.operation) else {
        return allow;
    };
    match (webhook, req.resource.resource.as_str(), op) {
        (Webhook::Mutation, PLURAL_IPPOOL, Operation::Create) => mutate_ippool(req),
        (Webhook::Validation, PLURAL_IPPOOL, _) => validate_ippool(req, op, cluster, settings),
        (Webhook::Validation, PLURAL_VMNETCFG, Operation::Create | Operation::Update) => {
            validate_vmnetcfg(req, op, cluster)
        }
        _ => allow,
    }
}

fn operation(op: &KubeOperation) -> Option<Operation> {
    match op {
        KubeOperation::Create => Some(Operation::Create),
        KubeOperation::Update => Some(Operation::Update),
        KubeOperation::Delete => Some(Operation::Delete),
        KubeOperation::Connect => None,
    }
}

/// The object a denial is about: kind, namespace and name for upstream's message.
struct Subject {
    op: Operation,
    kind: &'static str,
    namespace: String,
    name: String,
}

impl Subject {
    fn of(req: &AdmissionRequest<DynamicObject>, op: Operation, kind: &'static str) -> Self {
        // On CREATE with generateName the request has no name yet; the object may.
        let object = req.object.as_ref().or(req.old_object.as_ref());
        let name = object
            .and_then(|o| o.metadata.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| req.name.clone());
        let namespace = object
            .and_then(|o| o.metadata.namespace.clone())
            .or_else(|| req.namespace.clone())
            .unwrap_or_default();
        Self {
            op,
            kind,
            namespace,
            name,
        }
    }

    fn message(&self, cause: impl std::fmt::Display) -> String {
        admission_denied(self.op, self.kind, &self.namespace, &self.name, cause)
    }

    /// A denial with `code`, `reason` and one cause per violation.
    fn deny(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        code: u16,
        reason: &str,
        cause: &str,
        violations: &[Violation],
    ) -> AdmissionResponse {
        let causes = violations
            .iter()
            .map(|v| StatusCause {
                reason: "FieldValueInvalid".to_owned(),
                message: v.message.clone(),
                field: v.field.clone(),
            })
            .collect();
        let details = StatusDetails {
            name: self.name.clone(),
            group: GROUP.to_owned(),
            kind: self.kind.to_owned(),
            uid: String::new(),
            causes,
            retry_after_seconds: 0,
        };
        let mut response = AdmissionResponse::from(req).deny(self.message(cause));
        response.result = Status::failure(&response.result.message, reason)
            .with_code(code)
            .with_details(details);
        response
    }

    fn invalid(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        violations: &[Violation],
    ) -> AdmissionResponse {
        let cause = validate::join(violations);
        self.deny(req, 422, reason::INVALID, &cause, violations)
    }

    fn bad_request(&self, req: &AdmissionRequest<DynamicObject>, cause: &str) -> AdmissionResponse {
        self.deny(req, 400, reason::BAD_REQUEST, cause, &[])
    }
}

/// Decodes `object` (or `oldObject`) into a typed object, with the request's namespace filled
/// in when the object omits it (bare network names resolve in it).
fn decode<K: DeserializeOwned + kube::Resource>(
    req: &AdmissionRequest<DynamicObject>,
    old: bool,
) -> Result<K, String> {
    let (field, object) = if old {
        ("oldObject", req.old_object.as_ref())
    } else {
        ("object", req.object.as_ref())
    };
    let Some(object) = object else {
        return Err(format!("the request has no {field}"));
    };
    let value = serde_json::to_value(object)
        .map_err(|e| format!("the request's {field} cannot be decoded: {e}"))?;
    let mut typed: K = serde_json::from_value(value)
        .map_err(|e| format!("the request's {field} cannot be decoded: {e}"))?;
    if typed
        .meta()
        .namespace
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        typed.meta_mut().namespace.clone_from(&req.namespace);
    }
    Ok(typed)
}

fn mutate_ippool(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let subject = Subject::of(req, Operation::Create, KIND_IPPOOL);
    let pool: IPPool = match decode(req, false) {
        Ok(pool) => pool,
        Err(cause) => return subject.bad_request(req, &cause),
    };
    match default_ippool(&pool) {
        Ok(patch) if patch.0.is_empty() => AdmissionResponse::from(req),
        Ok(patch) => match AdmissionResponse::from(req).with_patch(patch) {
            Ok(response) => response,
            // A patch of strings and addresses always serialises; answer anyway.
            Err(e) => subject.deny(req, 500, reason::INTERNAL_ERROR, &e.to_string(), &[]),
        },
        Err(e) => {
            let violation = Violation::new(defaulting_field(&e), "", e.to_string());
            subject.deny(
                req,
                422,
                reason::INVALID,
                &e.to_string(),
                std::slice::from_ref(&violation),
            )
        }
    }
}

/// The field a defaulting error is about.
fn defaulting_field(e: &vmdhcp_api::Error) -> String {
    match e {
        vmdhcp_api::Error::InvalidCidr { .. } => "spec.ipv4Config.cidr".to_owned(),
        vmdhcp_api::Error::NoServerIp { .. } => "spec.ipv4Config.serverIP".to_owned(),
        vmdhcp_api::Error::InvalidPoolRange { .. } => "spec.ipv4Config.pool".to_owned(),
        vmdhcp_api::Error::InvalidIp { field, .. } => field.clone(),
        _ => "spec.ipv4Config".to_owned(),
    }
}

fn validate_ippool(
    req: &AdmissionRequest<DynamicObject>,
    op: Operation,
    cluster: &impl Cluster,
    settings: Settings,
) -> AdmissionResponse {
    let subject = Subject::of(req, op, KIND_IPPOOL);
    if op == Operation::Delete {
        return validate_ippool_delete(req, &subject, cluster);
    }
    let new: IPPool = match decode(req, false) {
        Ok(pool) => pool,
        Err(cause) => return subject.bad_request(req, &cause),
    };
    let nad_exists = new.network().is_ok_and(|nad| cluster.nad_exists(&nad));
    let pools = cluster.ippools();
    let ctx = validate::ippool::Context {
        service_cidr: settings.service_cidr,
        nad_exists,
        pools: &pools,
    };
    let old: Option<IPPool> = if op == Operation::Update {
        match decode(req, true) {
            Ok(pool) => Some(pool),
            Err(cause) => return subject.bad_request(req, &cause),
        }
    } else {
        None
    };
    let violations = match &old {
        Some(old) => validate::ippool::validate_update(old, &new, &ctx),
        None => validate::ippool::validate_create(&new, &ctx),
    };
    if !violations.is_empty() {
        return subject.invalid(req, &violations);
    }
    let mut response = AdmissionResponse::from(req);
    let warnings: Vec<String> = validate::ippool::warnings(old.as_ref(), &new)
        .iter()
        .map(|w| format!("{}: {}", w.field, w.message))
        .collect();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// Delete protection keyed by the pool's `spec.networkName` (upstream issue #10380).
fn validate_ippool_delete(
    req: &AdmissionRequest<DynamicObject>,
    subject: &Subject,
    cluster: &impl Cluster,
) -> AdmissionResponse {
    let pool = match decode::<IPPool>(req, true) {
        Ok(pool) => pool,
        // API servers before 1.15 send no oldObject on DELETE: fall back to the cache.
        Err(_) if req.old_object.is_none() => {
            match cluster.ippool(&NamespacedName::new(&subject.namespace, &subject.name)) {
                Some(pool) => (*pool).clone(),
                None => return AdmissionResponse::from(req),
            }
        }
        Err(cause) => return subject.bad_request(req, &cause),
    };
    let violations = validate::ippool::validate_delete(&pool, &cluster.vmnetcfgs());
    if violations.is_empty() {
        return AdmissionResponse::from(req);
    }
    let cause = validate::join(&violations);
    subject.deny(req, 409, reason::CONFLICT, &cause, &violations)
}

fn validate_vmnetcfg(
    req: &AdmissionRequest<DynamicObject>,
    op: Operation,
    cluster: &impl Cluster,
) -> AdmissionResponse {
    let subject = Subject::of(req, op, KIND_VMNETCFG);
    let new: VirtualMachineNetworkConfig = match decode(req, false) {
        Ok(cfg) => cfg,
        Err(cause) => return subject.bad_request(req, &cause),
    };
    // A NIC's pool is found as the controller finds the pool it allocates from: by network
    // name. The NAD's back-labels are written by the controller once the pool exists, so
    // they lag behind the pool and go stale after it.
    let pools = cluster.ippools();
    let lookup = |network: &NamespacedName| {
        if !cluster.nad_exists(network) {
            return Network::NadNotFound;
        }
        match validate::vmnetcfg::pool_for_network(network, &pools) {
            Some(pool) => Network::Managed(pool),
            None => Network::Unmanaged,
        }
    };
    let violations = if op == Operation::Update {
        let old: VirtualMachineNetworkConfig = match decode(req, true) {
            Ok(cfg) => cfg,
            Err(cause) => return subject.bad_request(req, &cause),
        };
        validate::vmnetcfg::validate_update(&old, &new, lookup)
    } else {
        validate::vmnetcfg::validate_create(&new, lookup)
    };
    if violations.is_empty() {
        AdmissionResponse::from(req)
    } else {
        subject.invalid(req, &violations)
    }
}

/// A body that is not an `AdmissionReview`: answered in kind when its `uid` can be read, so
/// the API server shows our message instead of a generic webhook failure.
fn undecodable_review(body: &[u8], error: &str) -> Reply {
    let message = format!("cannot decode the AdmissionReview: {error}");
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Reply::BadRequest(message);
    };
    let uid = value.pointer("/request/uid").and_then(Value::as_str);
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let (Some(uid), Some(api_version)) = (uid, api_version) else {
        return Reply::BadRequest(message);
    };
    let mut response = AdmissionResponse::invalid(&message);
    uid.clone_into(&mut response.uid);
    response.types = TypeMeta {
        api_version: api_version.to_owned(),
        kind: "AdmissionReview".to_owned(),
    };
    response.result = Status::failure(&message, reason::BAD_REQUEST).with_code(400);
    Reply::Review(Box::new(response.into_review()))
}

#[cfg(test)]
mod tests;
