//! # Layout
//!
//! `vmdhcp-webhook` is the admission webhook of vmdhcp: it defaults and validates IPPools and
//! validates VirtualMachineNetworkConfigs with the rules, paths and messages of Harvester's
//! `vm-dhcp-webhook`, and manages its own TLS and registration.
//!
//! Pure
//! - [`admission`] — an `AdmissionReview` body and a view of the cluster in, the answer out.
//!   The rules themselves are [`vmdhcp_api::default`] and [`vmdhcp_api::validate`].
//! - [`certs`] — generate, read and judge certificates (rcgen, x509-parser, webpki).
//! - [`registration`] — the webhook configurations' contents (and [`registration::apply`]).
//!
//! IO
//! - [`cache`] — reflector stores of IPPools, vmnetcfgs and NAD metadata: the cluster view.
//! - [`secrets`] — the CA and serving certificate in Secrets `<name>-ca` and `<name>-tls`.
//! - [`write`](mod@write) — the create/replace protocol that lets several replicas converge.
//! - [`tls`] — rustls configuration and the hot-swappable certificate resolver.
//! - [`server`] — HTTPS routes over hyper and tokio-rustls.
//! - [`run`] — wiring and the periodic certificate and registration check; [`cli`] — flags.
//!
//! Errors: [`Error`].
//!
//! # Fixed against upstream
//! Denials carry 4xx codes (400, 409, 422) instead of 500 `InternalError`; IPPool deletion is
//! protected by the pool's `spec.networkName` (upstream issue #10380); a NIC's pool is found by
//! network name, as the controller allocates, not through the NAD's labels; a NIC added by an
//! update is checked as on create; odd lease times are admitted with a warning; defaulting
//! emits `add` operations; v1beta1 reviews are answered as v1beta1; certificates renew without a restart;
//! the controller's finalizer, status and vmnetcfg spec writes go through while no replica
//! answers (match conditions, an `Ignore` webhook for vmnetcfg updates: see [`registration`]).
#![deny(rustdoc::broken_intra_doc_links)]

pub mod admission;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod error;
pub mod registration;
pub mod run;
pub mod secrets;
pub mod server;
pub mod tls;
pub mod write;

pub use error::Error;
