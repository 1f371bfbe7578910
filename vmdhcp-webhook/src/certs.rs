//! Certificates, pure: generate a CA, issue a serving certificate, read one back, and decide
//! whether a stored one can still be used. Time is passed in; nothing here reads a clock,
//! a file or the network.
//!
//! Keys are ECDSA P-256. The CA lives [`CA_LIFETIME`] and the serving certificate
//! [`SERVING_LIFETIME`]; either is replaced once less than a third of its lifetime is left
//! ([`renew_at`]), so a weekly-restarted or long-running replica always renews months early.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;

use crate::error::Error;

/// Lifetime of a generated CA: ten years, like upstream's dynamiclistener.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of a generated serving certificate: one year.
pub const SERVING_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// `notBefore` is set this far in the past, so a peer whose clock lags still accepts a fresh
/// certificate.
const BACKDATE: Duration = Duration::from_secs(3600);

/// How long generated certificates live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Of the CA.
    pub ca: Duration,
    /// Of the serving certificate.
    pub serving: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            ca: CA_LIFETIME,
            serving: SERVING_LIFETIME,
        }
    }
}

/// A certificate and its private key, both PEM, as stored in a `kubernetes.io/tls` Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPem {
    /// `tls.crt`.
    pub cert: String,
    /// `tls.key` (PKCS#8).
    pub key: String,
}

impl fmt::Debug for CertPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key: Debug output ends up in logs.
        let serial = inspect(&self.cert).map_or_else(|e| e.to_string(), |i| i.serial);
        f.debug_struct("CertPem")
            .field("serial", &serial)
            .finish_non_exhaustive()
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, hex bytes separated by colons.
    pub serial: String,
    /// Subject, e.g. `CN=vmdhcp-webhook.kube-system.svc`.
    pub subject: String,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// DNS names of the subject alternative names.
    pub dns_names: Vec<String>,
    /// Addresses of the subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether it may sign certificates.
    pub is_ca: bool,
}

/// Why a stored certificate is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// The certificate or key does not parse.
    Unreadable(String),
    /// The key is not the certificate's.
    KeyMismatch,
    /// The "CA" cannot sign.
    NotCa,
    /// Not valid yet at the time of the check.
    NotYetValid(Timestamp),
    /// Less than a third of the lifetime left (or expired): renew at the given time.
    Expiring(Timestamp),
    /// The serving certificate does not chain to the CA (or is otherwise refused by webpki).
    NotIssuedByCa(String),
    /// The serving certificate's names are not the wanted ones.
    SansChanged {
        /// What it has.
        have: Vec<String>,
        /// What is wanted.
        want: Vec<String>,
    },
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(why) => write!(f, "unreadable: {why}"),
            Self::KeyMismatch => f.write_str("the key does not match the certificate"),
            Self::NotCa => f.write_str("the certificate is not a CA"),
            Self::NotYetValid(at) => write!(f, "not valid before {at}"),
            Self::Expiring(at) => write!(f, "due for renewal since {at}"),
            Self::NotIssuedByCa(why) => write!(f, "not accepted under the current CA: {why}"),
            Self::SansChanged { have, want } => {
                write!(f, "names {} differ from {}", have.join(","), want.join(","))
            }
        }
    }
}

/// A new self-signed CA named `common_name`, valid from `now` (backdated an hour) for
/// `lifetime`.
///
/// # Errors
/// [`Error::Generate`] if rcgen fails (it does not for these parameters).
pub fn generate_ca(
    common_name: &str,
    now: Timestamp,
    lifetime: Duration,
) -> Result<CertPem, Error> {
    let generate = |source| Error::Generate {
        what: "CA certificate".to_owned(),
        source,
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "vmdhcp");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, now, lifetime);
    params.serial_number = Some(random_serial());
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(CertPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A new serving certificate for `sans` (DNS names or IP addresses; the first is also the
/// common name), signed by `ca`.
///
/// # Errors
/// [`Error::Pem`] if the CA cannot be read; [`Error::Generate`] for a SAN that is neither an
/// address nor a valid DNS name, or if signing fails.
pub fn issue_serving(
    ca: &CertPem,
    sans: &[String],
    now: Timestamp,
    lifetime: Duration,
) -> Result<CertPem, Error> {
    let what = format!("serving certificate for {}", sans.join(","));
    let generate = |source| Error::Generate {
        what: what.clone(),
        source,
    };
    let ca_key = KeyPair::from_pem(&ca.key).map_err(|e| Error::Pem {
        what: "CA key".to_owned(),
        reason: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(|e| Error::Pem {
        what: "CA certificate".to_owned(),
        reason: e.to_string(),
    })?;
    let mut params = CertificateParams::new(sans.to_vec()).map_err(generate)?;
    params.distinguished_name = DistinguishedName::new();
    if let Some(first) = sans.first() {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, lifetime);
    params.serial_number = Some(random_serial());
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, &issuer).map_err(generate)?;
    Ok(CertPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn set_validity(params: &mut CertificateParams, now: Timestamp, lifetime: Duration) {
    // rcgen wants `time::OffsetDateTime`; build it from the epoch so this crate needs no
    // `time` dependency of its own.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let secs = u64::try_from(now.as_second()).unwrap_or(0);
    let start = secs.saturating_sub(BACKDATE.as_secs());
    params.not_before = epoch + Duration::from_secs(start);
    params.not_after = epoch + Duration::from_secs(secs.saturating_add(lifetime.as_secs()));
}

/// 16 random bytes, positive: serials must be unique per CA (RFC 5280 §4.1.2.2), and a new
/// serial tells clients and tests apart which certificate is served.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(&mut bytes).is_err() {
        // ring's system RNG does not fail on Linux; fall back to the clock rather than panic.
        let nanos = Timestamp::now().as_nanosecond().to_be_bytes();
        bytes.copy_from_slice(&nanos);
    }
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Reads a PEM certificate.
///
/// # Errors
/// [`Error::Pem`] when it is not one.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, Error> {
    let bad = |reason: String| Error::Pem {
        what: "certificate".to_owned(),
        reason,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| bad(format!("not PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| bad(format!("not X.509: {e}")))?;
    let time = |t: &x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| bad(format!("validity: {e}")))
    };
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        serial: cert.raw_serial_as_string(),
        subject: cert.subject().to_string(),
        not_before: time(&cert.validity().not_before)?,
        not_after: time(&cert.validity().not_after)?,
        dns_names,
        ip_addresses,
        is_ca: cert.is_ca(),
    })
}

/// When a certificate is due for renewal: when a third of its lifetime is left.
pub fn renew_at(info: &CertInfo) -> Timestamp {
    let total = info.not_after.as_second() - info.not_before.as_second();
    Timestamp::from_second(info.not_after.as_second() - total / 3).unwrap_or(info.not_after)
}

/// Whether a stored CA can be kept at `now`.
///
/// # Errors
/// The reason to replace it.
pub fn check_ca(ca: &CertPem, now: Timestamp) -> Result<CertInfo, Stale> {
    let info = check_pair(ca, now)?;
    if !info.is_ca {
        return Err(Stale::NotCa);
    }
    Ok(info)
}

/// Whether a stored serving certificate can be kept at `now`: readable, its own key, valid
/// for another third of its lifetime, exactly the wanted names, and accepted by webpki under
/// `ca` for the first name.
///
/// # Errors
/// The reason to replace it.
pub fn check_serving(
    serving: &CertPem,
    ca: &CertPem,
    sans: &[String],
    now: Timestamp,
) -> Result<CertInfo, Stale> {
    let info = check_pair(serving, now)?;
    let have: BTreeSet<String> = info
        .dns_names
        .iter()
        .cloned()
        .chain(info.ip_addresses.iter().map(ToString::to_string))
        .collect();
    let want: BTreeSet<String> = sans.iter().map(|s| normalise_san(s)).collect();
    if have != want {
        return Err(Stale::SansChanged {
            have: have.into_iter().collect(),
            want: want.into_iter().collect(),
        });
    }
    verify_chain(serving, ca, sans, now).map_err(Stale::NotIssuedByCa)?;
    Ok(info)
}

/// The form [`inspect`] reports a SAN in (addresses canonical, names as given).
fn normalise_san(san: &str) -> String {
    san.parse::<IpAddr>()
        .map_or_else(|_| san.to_owned(), |ip| ip.to_string())
}

/// Parses both halves, checks they belong together and the validity window.
fn check_pair(pair: &CertPem, now: Timestamp) -> Result<CertInfo, Stale> {
    let info = inspect(&pair.cert).map_err(|e| Stale::Unreadable(e.to_string()))?;
    let key = KeyPair::from_pem(&pair.key).map_err(|e| Stale::Unreadable(format!("key: {e}")))?;
    let der = CertificateDer::from_pem_slice(pair.cert.as_bytes())
        .map_err(|e| Stale::Unreadable(e.to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| Stale::Unreadable(e.to_string()))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(Stale::KeyMismatch);
    }
    if now < info.not_before {
        return Err(Stale::NotYetValid(info.not_before));
    }
    let due = renew_at(&info);
    if now >= due {
        return Err(Stale::Expiring(due));
    }
    Ok(info)
}

/// What a TLS client trusting only `ca` would say about `serving` for the first SAN.
fn verify_chain(
    serving: &CertPem,
    ca: &CertPem,
    sans: &[String],
    now: Timestamp,
) -> Result<(), String> {
    let ca_der =
        CertificateDer::from_pem_slice(ca.cert.as_bytes()).map_err(|e| format!("CA: {e}"))?;
    let leaf = CertificateDer::from_pem_slice(serving.cert.as_bytes())
        .map_err(|e| format!("certificate: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der).map_err(|e| format!("CA: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let first = sans.first().ok_or("no names wanted")?;
    let name = ServerName::try_from(first.clone()).map_err(|e| format!("{first}: {e}"))?;
    let secs = u64::try_from(now.as_second()).unwrap_or(0);
    let now = UnixTime::since_unix_epoch(Duration::from_secs(secs));
    verifier
        .verify_server_cert(&leaf, &[], &name, &[], now)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
