//! An embeddable, RFC 2131-correct async DHCPv4 server on tokio, with a pure protocol engine.
//!
//! # Layout
//! - [`engine`]: [`decide`], the pure decision function `(request, context, config, leases,
//!   now) -> Decision`, with [`Context`], [`Decision`], [`Target`] and [`RequestState`]. No IO,
//!   no clock, no randomness.
//! - [`request`]: [`Request`], a zero-copy parser of received messages (option overload and
//!   RFC 3396 split options resolved), [`MessageType`], [`ParseError`].
//! - [`reply`]: [`Reply`] and its encoding: RFC 2131 Table 3 header, options in parameter
//!   request list order, size limit (option 57), padding to 300 bytes, [`EncodeError`].
//! - [`options`]: option codes and the ordered option area of replies.
//! - [`config`]: [`Config`] (validated and pre-encoded options of a subnet) and
//!   [`ConfigHandle`], swapped at any time while the server runs.
//! - [`leases`]: the [`LeaseSource`] trait, [`StaticLeases`] (MAC → address, live-updatable)
//!   and [`DynamicPool`] (allocation on the `ipam` crate).
//! - [`transport`]: [`DhcpSocket`], the UDP socket (`SO_BINDTODEVICE`, `SO_BROADCAST`,
//!   `IP_PKTINFO`, no `SO_REUSEPORT`), bound by the caller.
//! - [`server`]: [`Server::run`], the receive → decide → send loop, stopped by a
//!   [`CancellationToken`](tokio_util::sync::CancellationToken).
//! - [`event`]: [`Event`]s (offered, acked, nacked, declined, released, informed, ignored).
//! - [`metrics`]: counter names and the [`Metrics`] handles (the `metrics` facade; no
//!   recorder is installed by this crate).
//! - [`hwaddr`]: [`MacAddr`] (normalised lease key) and [`HwAddr`].
//! - [`error`]: [`Error`], for everything outside the packet path.
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
//! let len = decision.reply().unwrap().encode(&mut out)?;
//! assert!(len >= 300);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! See [`Server`] and the README for a running server.
#![deny(rustdoc::broken_intra_doc_links)]

pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod hwaddr;
pub mod leases;
pub mod metrics;
pub mod options;
pub mod reply;
pub mod request;
pub mod server;
pub mod transport;

#[cfg(test)]
mod testutil;

pub use config::{Config, ConfigBuilder, ConfigHandle, HostnamePolicy, LeaseTime, Route};
pub use engine::{Context, Decision, RequestState, Target, decide};
pub use error::Error;
pub use event::{Event, EventKind, IgnoreReason};
pub use hwaddr::{HwAddr, MacAddr};
pub use leases::{Confirmation, DynamicPool, Lease, LeaseSource, NoOffer, Query, StaticLeases};
pub use metrics::Metrics;
pub use reply::{EncodeError, MIN_REPLY_LEN, Reply};
pub use request::{Area, MessageType, ParseError, Request};
pub use server::Server;
pub use transport::{DhcpSocket, SocketConfig};

/// The examples in `README.md`, run as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
