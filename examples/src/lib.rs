//! Support for the veth examples and their tests: a pair of network namespaces joined by a
//! veth pair ([`netns`]) and the DHCP clients that ask for a lease across it ([`client`]).
//! The examples themselves live in `examples/`.

pub mod client;
pub mod demo;
pub mod netns;
