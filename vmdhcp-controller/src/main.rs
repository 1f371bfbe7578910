//! `vmdhcp-controller` binary.

fn main() {}
