//! `vmdhcp-webhook` binary.

fn main() {}
