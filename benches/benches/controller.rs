//! Allocation throughput through the controller's reconciler logic: 10,000 vmnetcfgs, one NIC
//! each, on one pool — for every NIC what a vmnetcfg reconcile does between its API calls:
//! take the pool's allocator (cached while the `resourceVersion` matches, else rebuilt from
//! the status), allocate, record it in the status, refresh the counters, and build the
//! vmnetcfg's status. And the pool writer's path with group commit (`writer_batch_N`): N NICs
//! applied at once to a copy of the pool as last written, one copy and one counter refresh
//! per batch.
//!
//! Run: `cargo bench -p vmdhcp-benches --bench controller`. Results: docs/performance.md.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use vmdhcp_api::ippool::IPPool;
use vmdhcp_api::vmnetcfg::VirtualMachineNetworkConfig;
use vmdhcp_controller::alloc::{self, Allocators, Request};
use vmdhcp_controller::netcfg_plan::{self, NicOutcome};
use vmdhcp_controller::pool_batch::{self, NicRequest, OpOutcome, PoolOp};

const VMS: u32 = 10_000;

fn pool() -> IPPool {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "net-big", "namespace": "default", "uid": "pool-uid", "resourceVersion": "1"},
        "spec": {"networkName": "default/net-big", "ipv4Config": {
            "cidr": "10.64.0.0/18", "serverIP": "10.64.0.1", "router": "10.64.0.254",
            "pool": {"start": "10.64.0.2", "end": "10.64.63.254", "exclude": ["10.64.1.1", "10.64.2.2"]}}}
    }))
    .expect("fixture pool")
}

fn macs() -> Vec<String> {
    (0..VMS)
        .map(|i| {
            let b = i.to_be_bytes();
            format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
        })
        .collect()
}

fn vmnetcfg(i: usize, mac: &str) -> VirtualMachineNetworkConfig {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "VirtualMachineNetworkConfig",
        "metadata": {"name": format!("vm-{i}"), "namespace": "default"},
        "spec": {"vmName": format!("vm-{i}"), "networkConfigs": [{"networkName": "default/net-big", "macAddress": mac}]}
    }))
    .expect("fixture vmnetcfg")
}

/// One NIC as the reconciler handles it; `cached` says whether this process wrote the pool
/// last (the allocator is reused) or another writer did (it is rebuilt from the status).
fn allocate_all(mut pool: IPPool, cfgs: &[VirtualMachineNetworkConfig], cached: bool) -> IPPool {
    let mut allocators = Allocators::default();
    let now = jiff::Timestamp::now();
    for (n, cfg) in cfgs.iter().enumerate() {
        let nic = &cfg.spec.network_configs[0];
        let mut ipam = allocators.take(&pool).expect("rebuilds");
        let req = Request {
            mac_text: &nic.mac_address,
            mac: nic.mac().expect("mac"),
            desired: None,
            previous: None,
        };
        let got = alloc::allocate(&mut pool, &mut ipam, &req).expect("room");
        let status = pool.status.get_or_insert_with(Default::default);
        vmdhcp_api::status::refresh_ipv4(status, &pool.spec.ipv4_config, &ipam.ipam);
        vmdhcp_api::status::touch(status, now);
        // The API server's new resourceVersion after the write.
        pool.metadata.resource_version = Some((n + 2).to_string());
        if cached {
            allocators.put(&pool, ipam);
        }
        let outcome = NicOutcome::Allocated {
            network_name: nic.network_name.clone(),
            mac_address: nic.mac_address.clone(),
            ip: got.ip,
        };
        black_box(netcfg_plan::assemble(cfg, &[outcome], now));
    }
    pool
}

/// The pool writer's CPU with group commit: `batch` NICs at a time applied to a copy of the
/// pool as last written (what a write sends), counters and `lastUpdate` once per batch.
fn allocate_in_batches(
    pool: &IPPool,
    cfgs: &[VirtualMachineNetworkConfig],
    batch: usize,
) -> IPPool {
    let mut last = pool.clone();
    let mut allocators = Allocators::default();
    let now = jiff::Timestamp::now();
    for (n, chunk) in cfgs.chunks(batch).enumerate() {
        let ops: Vec<PoolOp> = chunk
            .iter()
            .map(|cfg| {
                let nic = &cfg.spec.network_configs[0];
                PoolOp::Allocate(NicRequest {
                    mac_text: nic.mac_address.clone(),
                    mac: nic.mac().expect("mac"),
                    desired: None,
                    previous: None,
                })
            })
            .collect();
        let mut next = last.clone();
        let mut ipam = allocators.take(&next).expect("rebuilds");
        let outcomes = pool_batch::apply(&mut next, &mut ipam, &ops, now);
        next.metadata.resource_version = Some((n + 2).to_string());
        allocators.put(&next, ipam);
        for (cfg, outcome) in chunk.iter().zip(outcomes) {
            let OpOutcome::Allocated(got) = outcome else {
                panic!("{outcome:?}");
            };
            let nic = &cfg.spec.network_configs[0];
            let outcome = NicOutcome::Allocated {
                network_name: nic.network_name.clone(),
                mac_address: nic.mac_address.clone(),
                ip: got.ip,
            };
            black_box(netcfg_plan::assemble(cfg, &[outcome], now));
        }
        last = next;
    }
    last
}

fn bench(c: &mut Criterion) {
    let cfgs: Vec<_> = macs()
        .iter()
        .enumerate()
        .map(|(i, m)| vmnetcfg(i, m))
        .collect();
    let done = allocate_all(pool(), &cfgs, true);
    let v4 = done
        .status
        .as_ref()
        .and_then(|s| s.ipv4.as_ref())
        .expect("status");
    println!(
        "after {VMS} allocations: used {} available {}",
        v4.used, v4.available
    );

    let mut g = c.benchmark_group("controller_allocate_10000_vmnetcfgs");
    g.sample_size(10);
    g.bench_function("allocator_cached", |b| {
        b.iter_batched(
            pool,
            |p| allocate_all(p, &cfgs, true),
            BatchSize::LargeInput,
        );
    });
    g.bench_function("allocator_rebuilt_every_time", |b| {
        b.iter_batched(
            pool,
            |p| allocate_all(p, &cfgs, false),
            BatchSize::LargeInput,
        );
    });
    for batch in [1, 500] {
        g.bench_function(format!("writer_batch_{batch}"), |b| {
            let start = pool();
            b.iter(|| allocate_in_batches(&start, &cfgs, batch));
        });
    }
    g.finish();

    // A restart: the allocator of a pool holding 10,000 allocations rebuilt from its status.
    c.bench_function("controller_rebuild_pool_with_10000_allocations", |b| {
        b.iter(|| {
            black_box(vmdhcp_api::convert::to_ipam_pool(black_box(&done)).expect("rebuilds"))
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
