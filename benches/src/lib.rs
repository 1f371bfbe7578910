//! Support code for the vmdhcp benchmarks in `benches/`: baselines that model the allocators and
//! servers we compare against, and what the perfdhcp harness needs to know about perfdhcp.

pub mod go_ipam;
pub mod perfdhcp;
