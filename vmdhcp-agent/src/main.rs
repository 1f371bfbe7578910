//! `vmdhcp-agent` binary.

fn main() {}
