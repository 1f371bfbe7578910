//! The CRDs, applied at start-up by the leader (upstream applies its embedded CRDs too), with
//! server-side apply. A CRD that a newer vmdhcp installed is left alone.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::error::Error;

/// Annotation recording which vmdhcp version applied a CRD.
pub const VERSION_ANNOTATION: &str = "network.harvesterhci.io/vmdhcp-version";

/// Field manager of the apply.
pub const FIELD_MANAGER: &str = "vmdhcp-controller";

/// Whether a CRD stored with `stored` (the annotation's value, if any) should be replaced by
/// ours at `ours`: yes unless the stored one says it is newer.
pub fn should_apply(stored: Option<&str>, ours: &str) -> bool {
    let parse = |v: &str| -> Option<Vec<u64>> {
        v.split(['.', '-'])
            .take(3)
            .map(|p| p.parse().ok())
            .collect()
    };
    match (stored.and_then(parse), parse(ours)) {
        (Some(theirs), Some(mine)) => theirs <= mine,
        _ => true,
    }
}

/// Applies both CRDs.
///
/// # Errors
/// When the CRDs cannot be generated or applied (RBAC, API server down).
pub async fn apply(client: &Client) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ours = env!("CARGO_PKG_VERSION");
    let crds = vmdhcp_api::crd::crds().map_err(|source| Error::Api {
        object: "CRDs".into(),
        source,
    })?;
    for mut crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let stored = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("get CRD {name}"), e))?;
        let stored_version = stored
            .as_ref()
            .and_then(|c| c.metadata.annotations.as_ref())
            .and_then(|a| a.get(VERSION_ANNOTATION))
            .cloned();
        if !should_apply(stored_version.as_deref(), ours) {
            tracing::info!(
                crd = name,
                stored = stored_version,
                ours,
                "CRD is newer than ours; left alone"
            );
            continue;
        }
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(VERSION_ANNOTATION.to_owned(), ours.to_owned());
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| Error::kube(format!("apply CRD {name}"), e))?;
        tracing::info!(crd = name, "CRD applied");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::should_apply;

    #[test]
    fn newer_stored_crds_are_kept() {
        assert!(should_apply(None, "0.1.0"));
        assert!(should_apply(Some("0.1.0"), "0.1.0"));
        assert!(should_apply(Some("0.0.9"), "0.1.0"));
        assert!(!should_apply(Some("0.2.0"), "0.1.0"));
        assert!(should_apply(Some("garbage"), "0.1.0"));
    }
}
