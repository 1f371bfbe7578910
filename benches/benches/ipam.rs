//! `ipam` against a model of the upstream Go allocator (`vmdhcp_benches::go_ipam`), in the
//! same run. Results and the command are recorded in docs/performance.md.
//!
//! Run: `cargo bench -p vmdhcp-benches --bench ipam`
//! Memory is measured with a counting allocator and printed before the timings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ipam::{Pool, Strategy};
use ipnet::Ipv4Net;
use vmdhcp_benches::go_ipam::GoMapIpam;

/// Counts live heap bytes so the memory of a pool can be reported exactly.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged and only keeps a counter.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn heap_of<T>(build: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    let value = build();
    (value, LIVE.load(Ordering::Relaxed) - before)
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("valid network")
}

/// xorshift: deterministic pseudo-random indexes for the churn loops.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).expect("fits")
    }
}

/// Both allocators over the same /16 with the same 99 % of addresses allocated
/// (pseudo-randomly chosen, so the free 1 % is spread over the range).
fn ninety_nine_percent_full() -> (Pool, GoMapIpam, Vec<Ipv4Addr>) {
    let mut pool = Pool::whole(net("10.20.0.0/16")).expect("valid pool");
    let mut go = GoMapIpam::new(pool.start(), pool.end(), &[]);
    let mut all: Vec<Ipv4Addr> = (u32::from(pool.start())..=u32::from(pool.end()))
        .map(Ipv4Addr::from)
        .collect();
    let mut rng = Rng(7);
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i + 1));
    }
    let keep = all.len() * 99 / 100;
    let allocated: Vec<Ipv4Addr> = all.into_iter().take(keep).collect();
    pool.restore(allocated.iter().copied())
        .expect("distinct addresses");
    for &ip in &allocated {
        go.allocate_specific(ip).expect("distinct addresses");
    }
    (pool, go, allocated)
}

fn report_memory() {
    for network in ["10.0.0.0/16", "10.0.0.0/8"] {
        let (pool, ours) = heap_of(|| Pool::whole(net(network)).expect("valid pool"));
        let (go, theirs) = heap_of(|| GoMapIpam::new(pool.start(), pool.end(), &[]));
        let bits = pool.capacity() as usize / 8;
        println!(
            "memory {network}: ipam {ours} bytes ({:.1}% over 1 bit/address = {bits} bytes), \
             go-map model {theirs} bytes ({:.0}x ipam)",
            100.0 * (ours as f64 - bits as f64) / bits as f64,
            theirs as f64 / ours as f64,
        );
        drop(go);
    }
}

fn fill(c: &mut Criterion) {
    let mut g = c.benchmark_group("fill_slash16");
    g.sample_size(10);
    for (name, strategy) in [
        ("lowest_free", Strategy::LowestFree),
        ("next_fit", Strategy::NextFit),
    ] {
        g.bench_function(format!("ipam_{name}"), |b| {
            b.iter_batched_ref(
                || Pool::whole(net("10.20.0.0/16")).expect("valid pool"),
                |pool| while pool.allocate(strategy).is_ok() {},
                BatchSize::LargeInput,
            );
        });
    }
    g.bench_function("go_map", |b| {
        b.iter_batched_ref(
            || {
                let p = Pool::whole(net("10.20.0.0/16")).expect("valid pool");
                GoMapIpam::new(p.start(), p.end(), &[])
            },
            |go| while go.allocate().is_some() {},
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

fn churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("churn_99pct_slash16");
    let (pool, go, allocated) = ninety_nine_percent_full();
    for (name, strategy) in [
        ("lowest_free", Strategy::LowestFree),
        ("next_fit", Strategy::NextFit),
    ] {
        let mut pool = pool.clone();
        let mut held = allocated.clone();
        let mut rng = Rng(11);
        g.bench_function(format!("ipam_{name}_allocate_release"), |b| {
            b.iter(|| {
                let ip = pool.allocate(strategy).expect("1% is free");
                let i = rng.below(held.len());
                let old = std::mem::replace(&mut held[i], ip);
                pool.release(black_box(old)).expect("held");
            });
        });
    }
    {
        let mut go = go;
        let mut held = allocated.clone();
        let mut rng = Rng(11);
        g.bench_function("go_map_allocate_release", |b| {
            b.iter(|| {
                let ip = go.allocate().expect("1% is free");
                let i = rng.below(held.len());
                let old = std::mem::replace(&mut held[i], ip);
                go.release(black_box(old)).expect("held");
            });
        });
    }
    // Designated allocation (a VM with a static IP) followed by its release.
    let (mut pool, mut go, _) = ninety_nine_percent_full();
    let free: Vec<Ipv4Addr> = pool.free_ranges().flatten().collect();
    let mut rng = Rng(13);
    g.bench_function("ipam_allocate_specific_release", |b| {
        b.iter(|| {
            let ip = free[rng.below(free.len())];
            pool.allocate_specific(black_box(ip)).expect("free");
            pool.release(ip).expect("just allocated");
        });
    });
    let mut rng = Rng(13);
    g.bench_function("go_map_allocate_specific_release", |b| {
        b.iter(|| {
            let ip = free[rng.below(free.len())];
            go.allocate_specific(black_box(ip)).expect("free");
            go.release(ip).expect("just allocated");
        });
    });
    g.finish();
}

fn counts(c: &mut Criterion) {
    let mut g = c.benchmark_group("used_available_99pct_slash16");
    let (pool, go, _) = ninety_nine_percent_full();
    g.bench_function("ipam", |b| {
        b.iter(|| black_box(&pool).used() + black_box(&pool).available())
    });
    g.bench_function("go_map", |b| {
        b.iter(|| black_box(&go).used() + black_box(&go).available())
    });
    g.finish();
}

fn restore(c: &mut Criterion) {
    let mut g = c.benchmark_group("restore_60k");
    g.sample_size(20);
    let network = net("10.30.0.0/16");
    let base = Pool::whole(network).expect("valid pool");
    let ips: Vec<Ipv4Addr> = (0..60_000u32)
        .map(|i| Ipv4Addr::from(u32::from(base.start()) + i))
        .collect();
    g.bench_function("ipam_new_and_restore", |b| {
        b.iter(|| {
            let mut pool = Pool::whole(network).expect("valid pool");
            pool.restore(ips.iter().copied()).expect("distinct");
            pool
        });
    });
    g.bench_function("go_map_new_and_restore", |b| {
        b.iter(|| {
            let mut go = GoMapIpam::new(base.start(), base.end(), &[]);
            for &ip in &ips {
                go.allocate_specific(ip).expect("distinct");
            }
            go
        });
    });
    g.finish();
}

/// Allocation when the only free address is the last one of the range: the worst case of a
/// lowest-free search, for growing pools.
fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("worst_case_allocate_by_size");
    for network in ["10.0.0.0/24", "10.0.0.0/16", "10.0.0.0/12", "10.0.0.0/8"] {
        let mut pool = Pool::whole(net(network)).expect("valid pool");
        let last = pool.end();
        while pool.available() > 1 {
            pool.allocate(Strategy::LowestFree).expect("free left");
        }
        g.bench_function(network.replace('/', "_"), |b| {
            b.iter(|| {
                let ip = pool.allocate(Strategy::LowestFree).expect("one free");
                debug_assert_eq!(ip, last);
                pool.release(ip).expect("just allocated");
            });
        });
    }
    g.finish();
}

fn memory(_: &mut Criterion) {
    report_memory();
}

criterion_group!(benches, memory, churn, counts, restore, scaling, fill);
criterion_main!(benches);
