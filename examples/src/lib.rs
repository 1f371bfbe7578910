//! Support for the veth examples and their tests: a pair of network namespaces joined by a
//! veth pair ([`netns`]) and the DHCP clients that ask for a lease across it ([`client`]).
//! [`prereq`] turns a missing prerequisite into a skip that says why (a failure under
//! `CI=true`). With the `e2e` feature, the kit the end-to-end suites share ([`e2e`]). The examples
//! themselves live in `examples/`.

pub mod client;
pub mod demo;
#[cfg(feature = "e2e")]
pub mod e2e;
#[cfg(feature = "e2e")]
pub mod logs;
pub mod netns;
pub mod prereq;
