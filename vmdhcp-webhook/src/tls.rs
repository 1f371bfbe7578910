//! The rustls side: the server configuration (TLS 1.2 and 1.3, ECDHE with AES-GCM or
//! ChaCha20-Poly1305 only) and a certificate resolver whose certificate can be swapped while
//! the server runs. A swap applies to the next handshake; open connections keep theirs.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig};

use crate::certs::CertPem;
use crate::error::Error;

/// The suites offered. rustls implements no CBC, RC4 or static-RSA suite, so its ring set is
/// already "modern"; listing them keeps that a decision of this crate rather than of a future
/// rustls default.
pub const CIPHER_SUITES: &[CipherSuite] = &[
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The ring provider restricted to [`CIPHER_SUITES`].
pub fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|suite| CIPHER_SUITES.contains(&suite.suite()));
    provider
}

/// Serves whatever certificate was [`set`](Self::set) last.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn set(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// The certificate being served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate for every name: the API server connects by Service name or, in
        // development, by the registered URL's host; both are in the SANs.
        Some(self.current.load_full())
    }
}

/// A rustls key from a PEM pair, after checking that the key is the certificate's.
///
/// # Errors
/// [`Error::Pem`] for unreadable PEM; [`Error::Tls`] for an unsupported or mismatched key.
pub fn certified_key(pair: &CertPem) -> Result<CertifiedKey, Error> {
    let pem = |what: &str| {
        let what = what.to_owned();
        move |e: rustls::pki_types::pem::Error| Error::Pem {
            what,
            reason: e.to_string(),
        }
    };
    let chain = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("serving certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).map_err(pem("serving key"))?;
    let certified = CertifiedKey::from_der(chain, key, &provider())?;
    certified.keys_match()?;
    Ok(certified)
}

/// The server configuration: TLS 1.3 and 1.2, [`CIPHER_SUITES`], no client certificates,
/// HTTP/1.1 announced by ALPN (the API server falls back to it).
///
/// # Errors
/// [`Error::Tls`] if rustls refuses the versions (it does not for these).
pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CA_LIFETIME, SERVING_LIFETIME, generate_ca, issue_serving};

    fn serving() -> CertPem {
        let now = jiff::Timestamp::now();
        let ca = generate_ca("ca", now, CA_LIFETIME).unwrap();
        issue_serving(&ca, &["a.b.svc".to_owned()], now, SERVING_LIFETIME).unwrap()
    }

    #[test]
    fn provider_keeps_only_aead_ecdhe_suites() {
        let suites: Vec<_> = provider()
            .cipher_suites
            .iter()
            .map(rustls::SupportedCipherSuite::suite)
            .collect();
        assert!(!suites.is_empty());
        assert!(
            suites.iter().all(|s| CIPHER_SUITES.contains(s)),
            "{suites:?}"
        );
        assert!(suites.contains(&CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
    }

    #[test]
    fn resolver_swaps() {
        let first = certified_key(&serving()).unwrap();
        let second = certified_key(&serving()).unwrap();
        let resolver = CertResolver::new(first.clone());
        assert_eq!(resolver.current().cert, first.cert);
        resolver.set(second.clone());
        assert_eq!(resolver.current().cert, second.cert);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = serving();
        let b = serving();
        let mixed = CertPem {
            cert: a.cert,
            key: b.key,
        };
        assert!(matches!(certified_key(&mixed), Err(Error::Tls(_))));
        let garbage = CertPem {
            cert: "x".into(),
            key: "y".into(),
        };
        assert!(matches!(certified_key(&garbage), Err(Error::Pem { .. })));
    }

    #[test]
    fn config_builds() {
        let resolver = Arc::new(CertResolver::new(certified_key(&serving()).unwrap()));
        let config = server_config(resolver).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
