//! # Layout
//!
//! An embeddable, RFC 2131-correct async DHCPv4 server on tokio, with a pure protocol engine.
//!
//! **Naming.** Every type, trait and function is named at the crate root and only there
//! (`dhcp_server::Config`, `dhcp_server::decide`, ...): the modules that define them are
//! private. The public modules hold constants and test support: [`metrics`], the names of the
//! counters and their labels, and `testutil` (feature `testutil`), the reply-invariant
//! checker shared by the property tests and the fuzz target.
//!
//! **Modules**, from the wire inwards:
//! - `transport`: [`DhcpSocket`] and [`SocketConfig`], the UDP socket (`SO_BINDTODEVICE`,
//!   `SO_BROADCAST`, `IP_PKTINFO`, no `SO_REUSEPORT`), bound by the caller; datagrams are
//!   received and sent in batches (`recvmmsg`/`sendmmsg`, the crate's only `unsafe` code).
//! - `server`: [`Server::run`], the receive → decide → send loop, stopped by a
//!   [`CancellationToken`](tokio_util::sync::CancellationToken).
//! - `request`: [`Request`], a zero-copy, tolerant parser of received messages (option
//!   overload and RFC 3396 split options resolved; malformed non-essential options skipped
//!   and counted as [`Skips`] by [`Skip`] reason), [`MessageType`], [`ParseError`] and
//!   [`Area`].
//! - `engine`: [`decide`], the pure decision function `(request, context, config, leases,
//!   now) -> Decision`, with [`Context`], [`Decision`], [`Target`] and [`RequestState`]. No
//!   IO, no clock, no randomness.
//! - `reply`: [`Reply`] and its encoding (RFC 2131 Table 3 header, options in parameter
//!   request list order, option 57 size limit, padding to 300 bytes), [`EncodeError`].
//! - `options` (private): option codes and the fixed-capacity option plan of a reply.
//! - `config`: [`Config`] (validated and pre-encoded options of a subnet), built with
//!   [`ConfigBuilder`] from [`LeaseTime`], [`Route`] and [`HostnamePolicy`];
//!   [`ConfigHandle`], swapped at any time while the server runs.
//! - `leases`: the [`LeaseSource`] trait (called with a [`Query`], answering with a
//!   [`Lease`], [`NoOffer`] or [`Confirmation`]), [`StaticLeases`] (MAC → address,
//!   live-updatable, with address conflicts) and [`DynamicPool`] (allocation on the `ipam`
//!   crate).
//! - `event`: [`Event`], [`EventKind`] and [`IgnoreReason`]: what the server did with each
//!   request.
//! - [`metrics`]: counter and label names; [`Metrics`], the counter handles (the `metrics`
//!   facade: this crate installs no recorder).
//! - `hwaddr`: [`MacAddr`] (normalised lease key) and [`HwAddr`] (`htype` + `chaddr`).
//! - `error`: [`Error`], for everything outside the packet path.
//!
//! # Example
//! The engine alone, as a test or a bench drives it:
//! ```
//! use std::time::Instant;
//! use dhcp_server::{decide, Config, Context, EventKind, Lease, Request, StaticLeases};
//!
//! let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
//! let mut leases: StaticLeases =
//!     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
//!
//! let mut bytes = vec![0u8; 236]; // a DISCOVER from 02:00:00:00:00:01
//! bytes[..3].copy_from_slice(&[1, 1, 6]);
//! bytes[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
//! bytes.extend([99, 130, 83, 99, 53, 1, 1, 255]);
//!
//! let request = Request::parse(&bytes)?;
//! let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
//! let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
//! assert_eq!(decision.event().kind(), EventKind::Offered);
//! let mut out = [0u8; 1500];
//! let len = decision.reply().expect("an offer").encode(&mut out)?;
//! assert!(len >= 300);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! See [`Server`] and the README for a running server.
#![deny(rustdoc::broken_intra_doc_links)]

mod config;
mod engine;
mod error;
mod event;
mod hwaddr;
mod leases;
pub mod metrics;
mod options;
mod reply;
mod request;
mod server;
mod transport;

#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use config::{Config, ConfigBuilder, ConfigHandle, HostnamePolicy, LeaseTime, Route};
pub use engine::{Context, Decision, RequestState, Target, decide};
pub use error::Error;
pub use event::{Event, EventKind, IgnoreReason};
pub use hwaddr::{HwAddr, MacAddr};
pub use leases::{
    Confirmation, DynamicPool, Lease, LeaseSource, LeaseTable, NoOffer, Query, StaticLeases,
};
pub use metrics::handles::Metrics;
pub use reply::{EncodeError, Reply};
pub use request::{Area, MessageType, ParseError, Request, Skip, Skips};
pub use server::Server;
pub use transport::{DhcpSocket, SocketConfig};

/// The examples in `README.md`, run as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
