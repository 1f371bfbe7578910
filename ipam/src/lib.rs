//! A pure, synchronous bitmap IPv4 address allocator.
//!
//! A [`Pool`] is an IPv4 network plus an inclusive range `[start, end]` inside it, kept as one
//! bit per address. Addresses are free, allocated or reserved (a DHCP server, a router,
//! exclusions: never handed out, counted neither as used nor as available). The crate does no
//! IO, reads no clock and spawns nothing; every method is deterministic, so a controller can
//! rebuild the exact same pool from what it persisted.
//!
//! # Layout
//! - [`pool`]: [`Pool`], the allocation [`Strategy`] and per-address [`AddrState`].
//! - [`error`]: [`Error`], the one error type, with the offending values in every variant.
//! - `bitmap` (private): a word-summarised bitmap, so searches skip full 64-bit words.
//! - `serde` (feature `serde`): pools serialize as network, range, reservations and
//!   allocations, and are validated again when deserialized.
//!
//! # Example
//! ```
//! use ipam::{AddrState, Error, Pool, Strategy};
//!
//! // 192.168.48.0/24, hand out .81 - .90; .81 and .90 are excluded, .1 is the router.
//! let mut pool = Pool::new(
//!     "192.168.48.0/24".parse()?,
//!     "192.168.48.81".parse()?,
//!     "192.168.48.90".parse()?,
//! )?;
//! for ip in ["192.168.48.81", "192.168.48.90", "192.168.48.1"] {
//!     pool.reserve(ip.parse()?)?;
//! }
//! assert_eq!((pool.capacity(), pool.available()), (10, 8));
//!
//! // A VM asks for a specific address, another takes whatever is free.
//! pool.allocate_specific("192.168.48.84".parse()?)?;
//! let ip = pool.allocate(Strategy::LowestFree)?;
//! assert_eq!(ip.to_string(), "192.168.48.82");
//! assert_eq!((pool.used(), pool.available()), (2, 6));
//!
//! // Errors name the values.
//! let err = pool.allocate_specific("192.168.48.90".parse()?).unwrap_err();
//! assert_eq!(err.to_string(), "192.168.48.90 is reserved");
//!
//! // Widen the range later; every allocation stays where it is.
//! pool.resize("192.168.48.81".parse()?, "192.168.48.120".parse()?)?;
//! assert_eq!(pool.state("192.168.48.84".parse()?), AddrState::Allocated);
//!
//! // Rebuild from persisted allocations after a restart: identical pool.
//! let mut rebuilt = Pool::new(pool.network(), pool.start(), pool.end())?;
//! for ip in pool.reserved() {
//!     rebuilt.reserve(ip)?;
//! }
//! rebuilt.restore(pool.allocated())?;
//! assert_eq!(rebuilt, pool);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]

mod bitmap;
pub mod error;
pub mod pool;
#[cfg(feature = "serde")]
mod serde;

pub use error::Error;
pub use pool::{AddrState, MAX_RANGE, Pool, Strategy};

/// The examples in `README.md`, run as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
