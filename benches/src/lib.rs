//! Support code for the vmdhcp benchmarks in `benches/`: baselines that model the allocators and
//! servers we compare against.

pub mod go_ipam;
