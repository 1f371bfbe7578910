//! The `ValidatingWebhookConfiguration` and `MutatingWebhookConfiguration`, both named
//! `<name>` (spec/upstream.md §5.1): what they contain ([`validating`], [`mutating`], pure) and
//! how they are written ([`apply`], the [`write`](crate::write) protocol).
//!
//! | | validating | mutating |
//! |---|---|---|
//! | webhook | `validator.<namespace>.<name>` | `mutator.<namespace>.<name>` |
//! | path | `/v1/webhook/validation` | `/v1/webhook/mutation` |
//! | rules | `ippools` CREATE, UPDATE, DELETE; `virtualmachinenetworkconfigs` CREATE, UPDATE | `ippools` CREATE |
//! | failurePolicy | `Fail` | `Ignore` |
//!
//! Both: Service `<namespace>/<name>` port 443 (or a URL in development), `caBundle` = the
//! CA, `sideEffects: None`, `admissionReviewVersions: [v1, v1beta1]`, scope `Namespaced`.
//! The fields the API server would default are written out, so a stored configuration
//! compares equal to ours and an unchanged one is never rewritten.
//!
//! Reads use `list` with a name field selector, not `get`: upstream's ClusterRole grants
//! `list`, `create` and `update` on webhook configurations, and this works under it.
//! Upstream made the configurations owned by the CA Secret; a cluster-scoped object cannot be
//! owned by a namespaced one (the garbage collector ignores such references), so we set none.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
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

/// The `ValidatingWebhookConfiguration` `<name>`.
pub fn validating(reg: &Registration) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(reg.name.clone()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: format!("validator.{}.{}", reg.namespace, reg.name),
            client_config: reg.client_config(PATH_VALIDATION),
            rules: Some(vec![
                rule(PLURAL_IPPOOL, &["CREATE", "UPDATE", "DELETE"]),
                rule(PLURAL_VMNETCFG, &["CREATE", "UPDATE"]),
            ]),
            failure_policy: Some("Fail".to_owned()),
            side_effects: "None".to_owned(),
            admission_review_versions: review_versions(),
            match_policy: Some("Equivalent".to_owned()),
            namespace_selector: Some(LabelSelector::default()),
            object_selector: Some(LabelSelector::default()),
            timeout_seconds: Some(10),
            match_conditions: None,
        }]),
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
            name: format!("mutator.{}.{}", reg.namespace, reg.name),
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
/// # Errors
/// See [`apply`].
pub async fn converge<K: WebhookConfiguration>(
    api: &Api<K>,
    mut desired: K,
) -> Result<Outcome, Error> {
    let name = desired.meta().name.clone().unwrap_or_default();
    let object = format!("{} {name}", K::kind(&()));
    let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
    let want = desired.webhooks_mut().clone();
    for _ in 0..MAX_ATTEMPTS {
        let listed = api
            .list(&by_name)
            .await
            .map_err(kube_error("list", &object))?;
        let Some(mut current) = listed.items.into_iter().next() else {
            match api.create(&PostParams::default(), &desired).await {
                Ok(_) => {
                    tracing::info!(configuration = %object, "created");
                    return Ok(Outcome::Created);
                }
                Err(e) if already_exists(&e) => continue,
                Err(e) => return Err(kube_error("create", &object)(e)),
            }
        };
        if *current.webhooks_mut() == want {
            return Ok(Outcome::Kept);
        }
        current.webhooks_mut().clone_from(&want);
        match api.replace(&name, &PostParams::default(), &current).await {
            Ok(_) => {
                tracing::info!(configuration = %object, "updated");
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
    fn validating_matches_upstream() {
        let got = serde_json::to_value(validating(&reg(Target::Service { port: 443 }))).unwrap();
        let hook = &got["webhooks"][0];
        assert_eq!(
            got["metadata"]["name"],
            "harvester-vm-dhcp-controller-webhook"
        );
        assert_eq!(
            hook["name"],
            "validator.harvester-system.harvester-vm-dhcp-controller-webhook"
        );
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["admissionReviewVersions"], json!(["v1", "v1beta1"]));
        assert_eq!(
            hook["clientConfig"]["service"],
            json!({"name": "harvester-vm-dhcp-controller-webhook", "namespace": "harvester-system",
                   "path": "/v1/webhook/validation", "port": 443})
        );
        assert!(hook["clientConfig"].get("url").is_none());
        assert_eq!(
            hook["rules"],
            json!([
                {"apiGroups": ["network.harvesterhci.io"], "apiVersions": ["v1alpha1"],
                 "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["ippools"], "scope": "Namespaced"},
                {"apiGroups": ["network.harvesterhci.io"], "apiVersions": ["v1alpha1"],
                 "operations": ["CREATE", "UPDATE"], "resources": ["virtualmachinenetworkconfigs"], "scope": "Namespaced"},
            ])
        );
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
