//! The CA and the serving certificate, kept in the Secrets `<name>-ca` and `<name>-tls` of
//! `--namespace` (upstream's names), as `kubernetes.io/tls` data (`tls.crt`, `tls.key`).
//!
//! Every replica runs [`ensure`] at start and periodically: a stored pair that
//! [`certs::check_ca`] / [`certs::check_serving`] accept is used as is, anything else is
//! replaced, following the [`write`](crate::write) protocol so that replicas starting together
//! end up serving the same CA.
//!
//! A CA that cannot be loaded (for instance upstream's, whose EC key is SEC1, which ring cannot
//! read) is replaced; the new one is registered in the webhook configurations at once.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::certs::{self, CertPem, Lifetimes, Stale};
use crate::error::Error;
use crate::write::{MAX_ATTEMPTS, Outcome, already_exists, conflict, kube_error};

/// Data key of the certificate.
pub const TLS_CRT: &str = "tls.crt";
/// Data key of the private key.
pub const TLS_KEY: &str = "tls.key";
/// Label on the Secrets we create.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "vmdhcp-webhook");

/// Name of the CA Secret for webhook `name`.
pub fn ca_secret_name(name: &str) -> String {
    format!("{name}-ca")
}

/// Name of the serving-certificate Secret for webhook `name`.
pub fn tls_secret_name(name: &str) -> String {
    format!("{name}-tls")
}

/// The CA and serving certificate in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificates {
    /// The CA (its certificate is the webhook configurations' `caBundle`).
    pub ca: CertPem,
    /// The serving certificate, signed by `ca`.
    pub serving: CertPem,
    /// What happened to the CA Secret.
    pub ca_outcome: Outcome,
    /// What happened to the serving Secret.
    pub serving_outcome: Outcome,
}

/// Loads, creates or renews both Secrets of webhook `name` (`api` is namespaced), for a
/// serving certificate with `sans` (the first is the Service's DNS name).
///
/// # Errors
/// [`Error::Kube`] when the API server refuses; [`Error::TooManyConflicts`] after
/// [`MAX_ATTEMPTS`] lost races; [`Error::Generate`] if a certificate cannot be made.
pub async fn ensure(
    api: &Api<Secret>,
    name: &str,
    sans: &[String],
    lifetimes: Lifetimes,
    now: Timestamp,
) -> Result<Certificates, Error> {
    let ca_name = format!("{name}-ca@{}", now.as_second());
    let (ca, ca_outcome) = converge(
        api,
        &ca_secret_name(name),
        |stored| certs::check_ca(stored, now).map(|_| ()),
        || certs::generate_ca(&ca_name, now, lifetimes.ca),
    )
    .await?;
    let (serving, serving_outcome) = converge(
        api,
        &tls_secret_name(name),
        |stored| certs::check_serving(stored, &ca, sans, now).map(|_| ()),
        || certs::issue_serving(&ca, sans, now, lifetimes.serving),
    )
    .await?;
    Ok(Certificates {
        ca,
        serving,
        ca_outcome,
        serving_outcome,
    })
}

/// Keeps the pair stored in Secret `name` when `keep` accepts it, else stores one from `make`.
///
/// # Errors
/// See [`ensure`].
pub async fn converge(
    api: &Api<Secret>,
    name: &str,
    keep: impl Fn(&CertPem) -> Result<(), Stale>,
    mut make: impl FnMut() -> Result<CertPem, Error>,
) -> Result<(CertPem, Outcome), Error> {
    let object = format!("Secret {}/{name}", api.namespace().unwrap_or_default());
    for _ in 0..MAX_ATTEMPTS {
        let stored = api
            .get_opt(name)
            .await
            .map_err(kube_error("get", &object))?;
        let Some(mut secret) = stored else {
            let pair = make()?;
            match api
                .create(&PostParams::default(), &new_secret(name, &pair))
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = %object, "created");
                    return Ok((pair, Outcome::Created));
                }
                Err(e) if already_exists(&e) => {
                    tracing::info!(secret = %object, "created meanwhile by another replica; re-reading");
                    continue;
                }
                Err(e) => return Err(kube_error("create", &object)(e)),
            }
        };
        let why = match read_pair(&secret) {
            Ok(pair) => match keep(&pair) {
                Ok(()) => return Ok((pair, Outcome::Kept)),
                Err(stale) => stale,
            },
            Err(stale) => stale,
        };
        tracing::info!(secret = %object, reason = %why, "replacing");
        let pair = make()?;
        set_pair(&mut secret, &pair);
        match api.replace(name, &PostParams::default(), &secret).await {
            Ok(_) => return Ok((pair, Outcome::Updated)),
            Err(e) if conflict(&e) => {
                tracing::info!(secret = %object, "changed meanwhile by another replica; re-reading");
            }
            Err(e) => return Err(kube_error("update", &object)(e)),
        }
    }
    Err(Error::TooManyConflicts {
        object,
        attempts: MAX_ATTEMPTS,
    })
}

/// The pair stored in a Secret.
///
/// # Errors
/// [`Stale::Unreadable`] when a key is missing or not UTF-8.
pub fn read_pair(secret: &Secret) -> Result<CertPem, Stale> {
    let field = |key: &str| {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| Stale::Unreadable(format!("no {key}")))?;
        String::from_utf8(bytes.0.clone())
            .map_err(|_| Stale::Unreadable(format!("{key} is not text")))
    };
    Ok(CertPem {
        cert: field(TLS_CRT)?,
        key: field(TLS_KEY)?,
    })
}

fn set_pair(secret: &mut Secret, pair: &CertPem) {
    let data = secret.data.get_or_insert_with(BTreeMap::new);
    data.insert(
        TLS_CRT.to_owned(),
        ByteString(pair.cert.clone().into_bytes()),
    );
    data.insert(
        TLS_KEY.to_owned(),
        ByteString(pair.key.clone().into_bytes()),
    );
    // `stringData` would win over `data` on write.
    secret.string_data = None;
}

fn new_secret(name: &str, pair: &CertPem) -> Secret {
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_owned(),
                MANAGED_BY.1.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        ..Secret::default()
    };
    set_pair(&mut secret, pair);
    secret
}
