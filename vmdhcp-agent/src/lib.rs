//! # Layout
//!
//! `vmdhcp-agent` serves one IPPool's leases over DHCPv4 on one interface, with the
//! [`dhcp_server`] library. The pool comes from Kubernetes (a watch on `--ippool-ref`) or, in
//! standalone mode, from a YAML file (`--ippool-file`).
//!
//! - [`table`] — pure: IPPool `status.ipv4.allocated` parsed compactly ([`table::Allocations`])
//!   → MAC → address table, and its diff.
//! - [`pool`] — pure: what the agent keeps of an IPPool ([`pool::Pool`]: name, spec,
//!   allocations), read straight from the API's JSON.
//! - [`options`] — pure: IPPool spec → `dhcp_server::Config` (the options of every reply).
//! - [`state`] — [`Served`](state::Served): the table and configuration being served, swapped
//!   whole on every change so the next reply uses the latest spec.
//! - [`watch`] — Kubernetes source: the watcher, and the pure event → action step.
//! - [`file`](mod@file) — standalone source: parse, allocate vmnetcfg NICs with `ipam`, follow changes.
//! - [`conflict`] — address conflicts (DHCPDECLINE): how long a mark stands, and the Warning
//!   Event that tells the controller.
//! - [`ntp`] — resolves NTP host names on a schedule.
//! - [`http`] — `/healthz`, `/readyz`, `/metrics`, `/leases`.
//! - [`memory`] — gives the memory freed after loading a pool back to the system.
//! - [`metrics`] — the agent's own series.
//! - [`cli`] — flags; [`run`] — wiring ([`run::Agent`]).
//!
//! Errors: [`Error`].
//!
//! # Fixed against upstream
//! The initial list fills the table (upstream waited for the first update); an address that
//! moves to another MAC moves its lease; MACs match in any spelling; options follow the latest
//! spec without a restart; NTP names are re-resolved; REQUESTs are checked (the engine NAKs
//! wrong addresses); no zero-length router option; `/readyz` means synced; a failing watch
//! never empties the table, and its retries stay within seconds (see [`watch`]).
#![deny(rustdoc::broken_intra_doc_links)]

pub mod cli;
pub mod conflict;
pub mod error;
pub mod file;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod ntp;
pub mod options;
pub mod pool;
pub mod run;
pub mod state;
pub mod table;
pub mod watch;

pub use error::Error;
pub use run::{Agent, Dhcp, Source};
