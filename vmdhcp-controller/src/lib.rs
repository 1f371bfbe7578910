//! # Layout
//!
//! `vmdhcp-controller` allocates addresses to VM NICs from IPPools and runs one DHCP agent
//! Pod per IPPool — Harvester's `vm-dhcp-controller`, same objects, names and messages, with
//! its defects fixed.
//!
//! Pure decisions (table-tested):
//! - [`pool_plan`] — an IPPool's conditions, agent Pod actions, counters, orphans.
//! - [`agent_pod`] — the agent Pod, its NAD copy (`static-ipam`), and node-loss fencing.
//! - [`gc`] — which orphaned allocations may be released, and when.
//! - [`alloc`] — per-NIC allocation against the pool status; [`Allocators`](alloc::Allocators).
//! - [`pool_batch`] — group commit: which NICs share a pool status write, what it writes,
//!   what a conflict redoes.
//! - [`netcfg_plan`] — a vmnetcfg's stale entries and resulting status.
//! - [`kubevirt`] — a VM's desired NICs and the VM reconciler's step.
//! - [`leader`] — client-go's Lease protocol ([`decide`](leader::decide)).
//!
//! Kubernetes glue: [`reconcile`] (the three reconcilers, and the handler of the agents'
//! address-conflict reports), [`context`] (shared state and the conflict-safe IPPool status
//! write), [`crds`], [`http`], [`metrics`], [`run`]; [`cli`].
//!
//! # Fixed against upstream
//! The allocator is rebuilt from the status it writes, and every status write carries the
//! `resourceVersion` it read and is retried on conflict: two VMs created at once never share an
//! address, and a restart changes nothing. Allocation is deterministic (lowest free; a paused
//! VM's previous address when still free). One NIC's failure does not block the others; NICs on
//! networks without an IPPool are left alone. Orphaned allocations are collected. NAD labels
//! are removed with their pool. Agent Pods on lost nodes are replaced. Stale metric series go
//! away. NIC order is deterministic (and an older controller's order is not rewritten).
//! Watches come back within seconds of an API server outage. An address a DHCP client declined
//! (another host uses it) is marked `CONFLICT`, kept out of use until an operator clears it,
//! and its NIC moved to another address (upstream ignored DECLINE).
//!
//! As upstream's status handlers, an IPPool's steps are independent: an agent Pod the API
//! server refuses shows in `Registered` (and a Warning Event) while `CacheReady`, counters,
//! marks and allocation go on.
#![deny(rustdoc::broken_intra_doc_links)]

pub mod agent_pod;
pub mod alloc;
pub mod cli;
pub mod context;
pub mod crds;
pub mod error;
pub mod gc;
pub mod http;
pub mod kubevirt;
pub mod leader;
pub mod metrics;
pub mod netcfg_plan;
pub mod pool_batch;
pub mod pool_plan;
pub mod reconcile;
pub mod run;

pub use error::Error;
