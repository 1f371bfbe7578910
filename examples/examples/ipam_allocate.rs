//! Allocate addresses from an `ipam` pool the way the vmdhcp controller does: reserve the
//! server and router, restore what was persisted, allocate for new VMs, then widen the range.
//!
//! Run: `cargo run -p vmdhcp-examples --example ipam_allocate`

use std::error::Error;
use std::net::Ipv4Addr;

use ipam::{Pool, Strategy};

fn main() -> Result<(), Box<dyn Error>> {
    let network = "192.168.48.0/24".parse()?;
    let mut pool = Pool::new(network, "192.168.48.81".parse()?, "192.168.48.90".parse()?)?;
    let server: Ipv4Addr = "192.168.48.81".parse()?;
    let router: Ipv4Addr = "192.168.48.1".parse()?;
    pool.reserve(server)?;
    pool.reserve(router)?;
    println!(
        "pool {}-{} in {}: server {server}, router {router}",
        pool.start(),
        pool.end(),
        pool.network()
    );

    // What an IPPool status would hold after a restart.
    pool.restore(["192.168.48.84".parse()?])?;
    for vm in ["vm-a", "vm-b", "vm-c"] {
        let ip = pool.allocate(Strategy::NextFit)?;
        println!("{vm:>5} -> {ip}");
    }
    println!(
        "used {} available {} capacity {}",
        pool.used(),
        pool.available(),
        pool.capacity()
    );

    match pool.allocate_specific(server) {
        Ok(()) => println!("unexpected: the server address was handed out"),
        Err(err) => println!("allocate {server}: {err}"),
    }

    pool.resize(pool.start(), "192.168.48.120".parse()?)?;
    println!(
        "after resize to {}-{}: available {}",
        pool.start(),
        pool.end(),
        pool.available()
    );
    let free: Vec<String> = pool
        .free_ranges()
        .map(|r| format!("{}-{}", r.start(), r.end()))
        .collect();
    println!("free ranges: {}", free.join(", "));
    Ok(())
}
