//! The `ValidatingWebhookConfiguration` and `MutatingWebhookConfiguration`, both named
//! `<name>`: what they contain ([`validating`], [`mutating`], pure) and how they are written
//! ([`apply`], the [`write`](crate::write) protocol).
//!
//! | webhook | configuration | rules | failurePolicy |
//! |---|---|---|---|
//! | `validator.<namespace>.<name>` | validating | `ippools` CREATE, UPDATE, DELETE; `virtualmachinenetworkconfigs` CREATE | `Fail` |
//! | `vmnetcfg-update-validator.<namespace>.<name>` | validating | `virtualmachinenetworkconfigs` UPDATE | `Ignore` |
//! | `mutator.<namespace>.<name>` | mutating | `ippools` CREATE | `Ignore` |
//!
//! The validating webhooks go to `/v1/webhook/validation`, the mutating one to
//! `/v1/webhook/mutation`. All: Service `<namespace>/<name>` port 443 (or a URL in
//! development), `caBundle` = the CA, `sideEffects: None`, `admissionReviewVersions: [v1,
//! v1beta1]`, scope `Namespaced`. The fields the API server would default are written out, so
//! a stored configuration compares equal to ours and an unchanged one is never rewritten.
//!
//! # The controller's bookkeeping never waits for the webhook
//!
//! A `Fail` webhook that cannot be reached refuses everything it matches. The controller must
//! still finish deletions and keep objects current while the webhook is down (a rolling update,
//! a crash, a node drain), so what the validators would allow anyway is not sent to them:
//!
//! - Rules name the main resources only. Writes to `ippools/status` and
//!   `virtualmachinenetworkconfigs/status` never match, so status updates are never intercepted.
//! - [`match_conditions`] (CEL, evaluated by the API server, on both validating webhooks): an
//!   UPDATE of an object that is being deleted, and an UPDATE that leaves `spec` as it was
//!   (finalizers, labels, annotations, owner references), are not sent. Removing a finalizer,
//!   the controller adding its finalizer, and the garbage collector's metadata edits therefore
//!   succeed whether the webhook answers or not. The validators allowed updates of deleting
//!   objects anyway, as upstream's did; an unchanged spec is no longer judged again against
//!   today's cluster (a NAD deleted since, a second pool created while the webhook was away).
//! - A vmnetcfg's spec is rewritten by the controller when its VM changes; that UPDATE has a
//!   webhook of its own with `Ignore`, so while the webhook is down the rewrite goes through
//!   unchecked and the controller's address management refuses what cannot be allocated (in
//!   the vmnetcfg's conditions). While the webhook is up it is checked as before.
//!
//! What stays fail-closed: every IPPool CREATE, spec-changing UPDATE and DELETE, and every
//! vmnetcfg CREATE; those are refused with `failed calling webhook` while no replica answers.
//!
//! Reads use `list` with a name field selector, not `get`: upstream's ClusterRole grants
//! `list`, `create` and `update` on webhook configurations, and this works under it.
//! Upstream made the configurations owned by the CA Secret; a cluster-scoped object cannot be
//! owned by a namespaced one (the garbage collector ignores such references), so we set none.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vmdhcp_api::consts::{GROUP, PLURAL_IPPOOL, PLURAL_VMNETCFG, VERSION};

use crate::admission::{PATH_MUTATION, PATH_VALIDATION};
use crate::error::Error;
use crate::write::{MAX_ATTEMPTS, Outcome, already_exists, conflict, kube_error};

/// Where the API server sends reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The Service `<namespace>/<name>` on this port (upstream: 443).
    Service {
        /// The Service port.
        port: u16,
    },
    /// A base URL such as `https://127.0.0.1:8443`; the paths are appended.
    Url(String),
}

/// Everything the two configurations are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `--name`: the configurations' and the Service's name.
    pub name: String,
    /// `--namespace`: the Service's namespace.
    pub namespace: String,
    /// The CA certificate (PEM) the API server verifies us with.
    pub ca_bundle: Vec<u8>,
    /// Service or URL.
    pub target: Target,
}

impl Registration {
    fn client_config(&self, path: &str) -> WebhookClientConfig {
        let (service, url) = match &self.target {
            Target::Service { port } => (
                Some(ServiceReference {
                    name: self.name.clone(),
                    namespace: self.namespace.clone(),
                    path: Some(path.to_owned()),
                    port: Some(i32::from(*port)),
                }),
                None,
            ),
            Target::Url(base) => (None, Some(format!("{}{path}", base.trim_end_matches('/')))),
        };
        WebhookClientConfig {
            ca_bundle: Some(ByteString(self.ca_bundle.clone())),
            service,
            url,
        }
    }
}

fn rule(resource: &str, operations: &[&str]) -> RuleWithOperations {
    let strings = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect());
    RuleWithOperations {
        api_groups: strings(&[GROUP]),
        api_versions: strings(&[VERSION]),
        operations: strings(operations),
        resources: strings(&[resource]),
        scope: Some("Namespaced".to_owned()),
    }
}

fn review_versions() -> Vec<String> {
    vec!["v1".to_owned(), "v1beta1".to_owned()]
}

/// The name of the validating webhook of everything but vmnetcfg updates (upstream's name).
pub fn validator_name(reg: &Registration) -> String {
    format!("validator.{}.{}", reg.namespace, reg.name)
}

/// The name of the validating webhook of vmnetcfg updates.
pub fn vmnetcfg_update_validator_name(reg: &Registration) -> String {
    format!("vmnetcfg-update-validator.{}.{}", reg.namespace, reg.name)
}

/// The name of the mutating webhook (upstream's name).
pub fn mutator_name(reg: &Registration) -> String {
    format!("mutator.{}.{}", reg.namespace, reg.name)
}

/// The requests the validators are not sent: see the module documentation. Each expression is
/// true for the requests that are sent, and written so that it cannot fail on a request it
/// does not concern (`object` is null on DELETE, `oldObject` on CREATE; `||` stops at the
/// first true operand), since an evaluation error would count as a call failure.
pub fn match_conditions() -> Vec<MatchCondition> {
    vec![
        MatchCondition {
            name: "not-being-deleted".to_owned(),
            expression: "request.operation != 'UPDATE' || !has(object.metadata.deletionTimestamp)"
                .to_owned(),
        },
        MatchCondition {
            name: "spec-changed".to_owned(),
            expression: "request.operation != 'UPDATE' || !has(object.spec) || \
                         !has(oldObject.spec) || object.spec != oldObject.spec"
                .to_owned(),
        },
    ]
}

fn validating_webhook(
    reg: &Registration,
    name: String,
    rules: Vec<RuleWithOperations>,
    failure_policy: &str,
) -> ValidatingWebhook {
    ValidatingWebhook {
        name,
        client_config: reg.client_config(PATH_VALIDATION),
        rules: Some(rules),
        failure_policy: Some(failure_policy.to_owned()),
        side_effects: "None".to_owned(),
        admission_review_versions: review_versions(),
        match_policy: Some("Equivalent".to_owned()),
        namespace_selector: Some(LabelSelector::default()),
        object_selector: Some(LabelSelector::default()),
        timeout_seconds: Some(10),
        match_conditions: Some(match_conditions()),
    }
}

/// The `ValidatingWebhookConfiguration` `<name>`.
pub fn validating(reg: &Registration) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(reg.name.clone()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![
            validating_webhook(
                reg,
                validator_name(reg),
                vec![
                    rule(PLURAL_IPPOOL, &["CREATE", "UPDATE", "DELETE"]),
                    rule(PLURAL_VMNETCFG, &["CREATE"]),
                ],
                "Fail",
            ),
            // The controller derives these specs from VMs: an outage must not stall it.
            validating_webhook(
                reg,
                vmnetcfg_update_validator_name(reg),
                vec![rule(PLURAL_VMNETCFG, &["UPDATE"])],
                "Ignore",
            ),
        ]),
    }
}

/// The `MutatingWebhookConfiguration` `<name>`.
pub fn mutating(reg: &Registration) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(reg.name.clone()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: mutator_name(reg),
            client_config: reg.client_config(PATH_MUTATION),
            rules: Some(vec![rule(PLURAL_IPPOOL, &["CREATE"])]),
            // Defaulting is a convenience: the schema still requires the fields, so an
            // unavailable mutator costs a clear schema error, not a broken pool.
            failure_policy: Some("Ignore".to_owned()),
            side_effects: "None".to_owned(),
            admission_review_versions: review_versions(),
            match_policy: Some("Equivalent".to_owned()),
            namespace_selector: Some(LabelSelector::default()),
            object_selector: Some(LabelSelector::default()),
            timeout_seconds: Some(10),
            reinvocation_policy: Some("Never".to_owned()),
            match_conditions: None,
        }]),
    }
}

/// Access to the `webhooks` list of either configuration kind.
pub trait WebhookConfiguration:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
{
    /// The webhooks.
    type Webhook: PartialEq + Clone;
    /// `webhooks`, mutable.
    fn webhooks_mut(&mut self) -> &mut Option<Vec<Self::Webhook>>;
}

impl WebhookConfiguration for ValidatingWebhookConfiguration {
    type Webhook = ValidatingWebhook;
    fn webhooks_mut(&mut self) -> &mut Option<Vec<ValidatingWebhook>> {
        &mut self.webhooks
    }
}

impl WebhookConfiguration for MutatingWebhookConfiguration {
    type Webhook = MutatingWebhook;
    fn webhooks_mut(&mut self) -> &mut Option<Vec<MutatingWebhook>> {
        &mut self.webhooks
    }
}

/// Writes both configurations; returns what happened to the validating and the mutating one.
///
/// # Errors
/// [`Error::Kube`] when the API server refuses; [`Error::TooManyConflicts`].
pub async fn apply(client: &Client, reg: &Registration) -> Result<(Outcome, Outcome), Error> {
    let validating_outcome = converge(&Api::all(client.clone()), validating(reg)).await?;
    let mutating_outcome = converge(&Api::all(client.clone()), mutating(reg)).await?;
    Ok((validating_outcome, mutating_outcome))
}

/// Makes the stored configuration's webhooks equal `desired`'s, keeping its other metadata.
///
/// A stored configuration that differs from ours is first replaced in a dry run: when the API
/// server would store exactly what it has, it is kept. Servers before Kubernetes 1.28 (or with
/// the `AdmissionWebhookMatchConditions` gate off) drop `matchConditions`; without this check
/// every periodic check would rewrite the configuration to no effect.
///
/// # Errors
/// See [`apply`].
pub async fn converge<K: WebhookConfiguration>(
    api: &Api<K>,
    mut desired: K,
) -> Result<Outcome, Error> {
    let name = desired.meta().name.clone().unwrap_or_default();
    let object = format!("{} {name}", K::kind(&()));
    let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
    let dry_run = PostParams {
        dry_run: true,
        field_manager: None,
    };
    let want = desired.webhooks_mut().clone();
    for _ in 0..MAX_ATTEMPTS {
        let listed = api
            .list(&by_name)
            .await
            .map_err(kube_error("list", &object))?;
        let Some(mut current) = listed.items.into_iter().next() else {
            match api.create(&PostParams::default(), &desired).await {
                Ok(mut created) => {
                    tracing::info!(configuration = %object, "created");
                    warn_if_altered(&object, created.webhooks_mut().as_ref(), want.as_ref());
                    return Ok(Outcome::Created);
                }
                Err(e) if already_exists(&e) => continue,
                Err(e) => return Err(kube_error("create", &object)(e)),
            }
        };
        if *current.webhooks_mut() == want {
            return Ok(Outcome::Kept);
        }
        let stored = current.webhooks_mut().clone();
        current.webhooks_mut().clone_from(&want);
        match api.replace(&name, &dry_run, &current).await {
            Ok(mut would_store) => {
                if *would_store.webhooks_mut() == stored {
                    return Ok(Outcome::Kept);
                }
            }
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(kube_error("update", &object)(e)),
        }
        match api.replace(&name, &PostParams::default(), &current).await {
            Ok(mut updated) => {
                tracing::info!(configuration = %object, "updated");
                warn_if_altered(&object, updated.webhooks_mut().as_ref(), want.as_ref());
                return Ok(Outcome::Updated);
            }
            Err(e) if conflict(&e) => {}
            Err(e) => return Err(kube_error("update", &object)(e)),
        }
    }
    Err(Error::TooManyConflicts {
        object,
        attempts: MAX_ATTEMPTS,
    })
}

/// The API server stored something else than we wrote: say so once per write, since the
/// likely cause (no `matchConditions`) makes the controller depend on the webhook again.
fn warn_if_altered<W: PartialEq>(object: &str, stored: Option<&Vec<W>>, written: Option<&Vec<W>>) {
    if stored != written {
        tracing::warn!(
            configuration = %object,
            "the API server stored other webhooks than were written; if it dropped \
             matchConditions (before Kubernetes 1.28), removing finalizers needs the webhook \
             to answer"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reg(target: Target) -> Registration {
        Registration {
            name: "harvester-vm-dhcp-controller-webhook".into(),
            namespace: "harvester-system".into(),
            ca_bundle: b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec(),
            target,
        }
    }

    #[test]
    fn validating_matches_upstream_but_for_vmnetcfg_updates() {
        let got = serde_json::to_value(validating(&reg(Target::Service { port: 443 }))).unwrap();
        assert_eq!(
            got["metadata"]["name"],
            "harvester-vm-dhcp-controller-webhook"
        );
        let hooks = got["webhooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 2);
        let service = json!({"name": "harvester-vm-dhcp-controller-webhook",
            "namespace": "harvester-system", "path": "/v1/webhook/validation", "port": 443});
        for hook in hooks {
            assert_eq!(hook["sideEffects"], "None");
            assert_eq!(hook["admissionReviewVersions"], json!(["v1", "v1beta1"]));
            assert_eq!(hook["clientConfig"]["service"], service);
            assert!(hook["clientConfig"].get("url").is_none());
            assert_eq!(hook["timeoutSeconds"], 10);
        }

        let main = &hooks[0];
        assert_eq!(
            main["name"],
            "validator.harvester-system.harvester-vm-dhcp-controller-webhook"
        );
        assert_eq!(main["failurePolicy"], "Fail");
        assert_eq!(
            main["rules"],
            json!([
                {"apiGroups": ["network.harvesterhci.io"], "apiVersions": ["v1alpha1"],
                 "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["ippools"], "scope": "Namespaced"},
                {"apiGroups": ["network.harvesterhci.io"], "apiVersions": ["v1alpha1"],
                 "operations": ["CREATE"], "resources": ["virtualmachinenetworkconfigs"], "scope": "Namespaced"},
            ])
        );

        let updates = &hooks[1];
        assert_eq!(
            updates["name"],
            "vmnetcfg-update-validator.harvester-system.harvester-vm-dhcp-controller-webhook"
        );
        assert_eq!(updates["failurePolicy"], "Ignore");
        assert_eq!(
            updates["rules"],
            json!([{"apiGroups": ["network.harvesterhci.io"], "apiVersions": ["v1alpha1"],
                    "operations": ["UPDATE"], "resources": ["virtualmachinenetworkconfigs"],
                    "scope": "Namespaced"}])
        );
    }

    /// Status writes must never reach a webhook: no rule may name a subresource or use `*`.
    #[test]
    fn no_rule_matches_a_subresource() {
        let r = reg(Target::Service { port: 443 });
        let validating = serde_json::to_value(validating(&r)).unwrap();
        let mutating = serde_json::to_value(mutating(&r)).unwrap();
        for config in [validating, mutating] {
            for hook in config["webhooks"].as_array().unwrap() {
                for rule in hook["rules"].as_array().unwrap() {
                    for resource in rule["resources"].as_array().unwrap() {
                        let resource = resource.as_str().unwrap();
                        assert!(
                            !resource.contains('/') && !resource.contains('*'),
                            "{} matches {resource}",
                            hook["name"]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn both_validators_skip_bookkeeping_updates() {
        let got = serde_json::to_value(validating(&reg(Target::Service { port: 443 }))).unwrap();
        let want = json!([
            {"name": "not-being-deleted",
             "expression": "request.operation != 'UPDATE' || !has(object.metadata.deletionTimestamp)"},
            {"name": "spec-changed",
             "expression": "request.operation != 'UPDATE' || !has(object.spec) || !has(oldObject.spec) || object.spec != oldObject.spec"},
        ]);
        for hook in got["webhooks"].as_array().unwrap() {
            assert_eq!(hook["matchConditions"], want, "{}", hook["name"]);
        }
    }

    /// Every clause that reads `object` or `oldObject` is guarded by the operation, so a
    /// DELETE (no `object`) or CREATE (no `oldObject`) never makes a condition fail.
    #[test]
    fn match_conditions_only_concern_updates() {
        for condition in match_conditions() {
            assert!(
                condition
                    .expression
                    .starts_with("request.operation != 'UPDATE' || "),
                "{}",
                condition.expression
            );
            let qualified = condition
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            assert!(qualified, "{} is not a qualified name", condition.name);
        }
    }

    #[test]
    fn mutating_matches_upstream() {
        let got = serde_json::to_value(mutating(&reg(Target::Service { port: 443 }))).unwrap();
        let hook = &got["webhooks"][0];
        assert_eq!(
            hook["name"],
            "mutator.harvester-system.harvester-vm-dhcp-controller-webhook"
        );
        assert_eq!(hook["failurePolicy"], "Ignore");
        assert_eq!(
            hook["clientConfig"]["service"]["path"],
            "/v1/webhook/mutation"
        );
        assert_eq!(hook["rules"][0]["operations"], json!(["CREATE"]));
        assert_eq!(hook["rules"][0]["resources"], json!(["ippools"]));
        assert_eq!(hook["rules"].as_array().unwrap().len(), 1);
        assert_eq!(got["webhooks"].as_array().unwrap().len(), 1);
        // CREATE only: the conditions would never apply.
        assert!(hook.get("matchConditions").is_none());
    }

    #[test]
    fn ca_bundle_is_base64_of_the_pem() {
        let r = reg(Target::Service { port: 443 });
        let got = serde_json::to_value(validating(&r)).unwrap();
        let bundle: ByteString =
            serde_json::from_value(got["webhooks"][0]["clientConfig"]["caBundle"].clone()).unwrap();
        assert_eq!(bundle.0, r.ca_bundle);
    }

    #[test]
    fn url_target_replaces_the_service() {
        let got = serde_json::to_value(mutating(&reg(Target::Url(
            "https://127.0.0.1:9443/".into(),
        ))))
        .unwrap();
        let config = &got["webhooks"][0]["clientConfig"];
        assert_eq!(config["url"], "https://127.0.0.1:9443/v1/webhook/mutation");
        assert!(config.get("service").is_none());
    }
}
