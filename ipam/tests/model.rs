//! Model test: random operation sequences applied to a `Pool` and to a plain `BTreeSet` model
//! must agree at every step (results, errors, accounting, iteration), and rebuilding a pool from
//! its reservations and allocations must give an identical pool.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipam::{AddrState, Error, Pool, Strategy};
use ipnet::Ipv4Net;
use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

#[derive(Clone, Debug)]
enum Op {
    Allocate(Strategy),
    AllocateSpecific(Ipv4Addr),
    Release(Ipv4Addr),
    Reserve(Ipv4Addr),
    Unreserve(Ipv4Addr),
    Resize(Ipv4Addr, Ipv4Addr),
    /// Build a new pool from the reservations and allocations and swap it in.
    Rebuild,
}

/// What the model says the last operation must return.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    None,
    Addr(Result<Ipv4Addr, Error>),
    Unit(Result<(), Error>),
    Bool(Result<bool, Error>),
}

#[derive(Clone, Debug)]
struct Model {
    network: Ipv4Net,
    start: u32,
    end: u32,
    allocated: BTreeSet<u32>,
    reserved: BTreeSet<u32>,
    cursor: u32,
    last_released: Option<u32>,
    /// Set when the previous operation was a successful release (for the `NextFit` invariant).
    just_released: Option<u32>,
    expect: Outcome,
}

impl Model {
    fn in_range(&self, ip: u32) -> bool {
        (self.start..=self.end).contains(&ip)
    }

    fn is_free(&self, ip: u32) -> bool {
        self.in_range(ip) && !self.allocated.contains(&ip) && !self.reserved.contains(&ip)
    }

    fn free(&self) -> impl Iterator<Item = u32> + '_ {
        (self.start..=self.end).filter(|&ip| self.is_free(ip))
    }

    /// First free address at or after `from`, wrapping around once.
    fn free_from(&self, from: u32) -> Option<u32> {
        (from..=self.end)
            .chain(self.start..from)
            .find(|&ip| self.is_free(ip))
    }

    fn exhausted(&self) -> Error {
        Error::Exhausted {
            network: self.network,
            start: self.start.into(),
            end: self.end.into(),
        }
    }

    fn special(&self, ip: Ipv4Addr) -> Option<Error> {
        let network = self.network;
        if network.prefix_len() <= 30 {
            if ip == network.network() {
                return Some(Error::NetworkAddress { ip, network });
            }
            if ip == network.broadcast() {
                return Some(Error::BroadcastAddress { ip, network });
            }
        }
        None
    }

    fn outside_network(&self, ip: Ipv4Addr) -> Option<Error> {
        (!self.network.contains(&ip)).then_some(Error::OutsideNetwork {
            ip,
            network: self.network,
        })
    }

    fn outside_range(&self, ip: Ipv4Addr) -> Option<Error> {
        (!self.in_range(ip.into())).then_some(Error::OutsideRange {
            ip,
            start: self.start.into(),
            end: self.end.into(),
        })
    }

    fn allocate(&mut self, strategy: Strategy) -> Result<Ipv4Addr, Error> {
        let found = match strategy {
            Strategy::Preferred(ip) if self.in_range(ip.into()) => self.free_from(ip.into()),
            Strategy::LowestFree | Strategy::Preferred(_) => self.free().next(),
            Strategy::NextFit => {
                let from = if self.in_range(self.cursor) {
                    self.cursor
                } else {
                    self.start
                };
                self.free_from(from).map(|first| {
                    if Some(first) == self.last_released {
                        self.free().find(|&ip| ip != first).map_or(first, |_| {
                            // The spec: the next free address after the skipped one.
                            let after = first.checked_add(1).filter(|&a| a <= self.end);
                            (after.unwrap_or(self.start)..=self.end)
                                .chain(self.start..first)
                                .find(|&ip| self.is_free(ip) && ip != first)
                                .expect("another free address exists")
                        })
                    } else {
                        first
                    }
                })
            }
        };
        let ip = found.ok_or_else(|| self.exhausted())?;
        if strategy == Strategy::NextFit {
            self.cursor = ip.checked_add(1).unwrap_or(self.start);
        }
        self.take(ip);
        Ok(ip.into())
    }

    fn take(&mut self, ip: u32) {
        self.allocated.insert(ip);
        if self.last_released == Some(ip) {
            self.last_released = None;
        }
    }

    fn allocate_specific(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        if let Some(err) = self
            .outside_network(ip)
            .or_else(|| self.special(ip))
            .or_else(|| self.outside_range(ip))
        {
            return Err(err);
        }
        let n = u32::from(ip);
        if self.reserved.contains(&n) {
            return Err(Error::Reserved { ip });
        }
        if self.allocated.contains(&n) {
            return Err(Error::AlreadyAllocated { ip });
        }
        self.take(n);
        Ok(())
    }

    fn release(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        if let Some(err) = self.outside_network(ip).or_else(|| self.outside_range(ip)) {
            return Err(err);
        }
        let n = u32::from(ip);
        if self.reserved.contains(&n) {
            return Err(Error::Reserved { ip });
        }
        if !self.allocated.remove(&n) {
            return Err(Error::NotAllocated { ip });
        }
        self.last_released = Some(n);
        Ok(())
    }

    fn reserve(&mut self, ip: Ipv4Addr) -> Result<bool, Error> {
        if let Some(err) = self.outside_network(ip) {
            return Err(err);
        }
        let n = u32::from(ip);
        if self.reserved.contains(&n) {
            return Ok(false);
        }
        if self.allocated.contains(&n) {
            return Err(Error::AlreadyAllocated { ip });
        }
        self.reserved.insert(n);
        Ok(true)
    }

    fn unreserve(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        if self.reserved.remove(&ip.into()) {
            Ok(())
        } else {
            Err(Error::NotReserved { ip })
        }
    }

    fn resize(&mut self, start: Ipv4Addr, end: Ipv4Addr) -> Result<(), Error> {
        for ip in [start, end] {
            if let Some(err) = self.outside_network(ip) {
                return Err(err);
            }
        }
        if start > end {
            return Err(Error::StartAfterEnd { start, end });
        }
        if let Some(err) = self.special(start).or_else(|| self.special(end)) {
            return Err(err);
        }
        let (s, e) = (u32::from(start), u32::from(end));
        let conflicts: Vec<Ipv4Addr> = self
            .allocated
            .iter()
            .filter(|ip| !(s..=e).contains(*ip))
            .map(|&ip| ip.into())
            .collect();
        if !conflicts.is_empty() {
            return Err(Error::ResizeConflict {
                start,
                end,
                conflicts,
            });
        }
        self.start = s;
        self.end = e;
        Ok(())
    }
}

/// Usable bounds of a network (RFC 3021 for /31 and /32).
fn usable(network: Ipv4Net) -> (u32, u32) {
    let (n, b) = (u32::from(network.network()), u32::from(network.broadcast()));
    if network.prefix_len() >= 31 {
        (n, b)
    } else {
        (n + 1, b - 1)
    }
}

/// An address in or just around the network, so edge and outside cases come up often.
fn addr_near(network: Ipv4Net) -> BoxedStrategy<Ipv4Addr> {
    let lo = u32::from(network.network()).saturating_sub(2);
    let hi = u32::from(network.broadcast()).saturating_add(2);
    (lo..=hi).prop_map(Ipv4Addr::from).boxed()
}

struct PoolMachine;

impl ReferenceStateMachine for PoolMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        (26u8..=32, any::<u32>())
            .prop_flat_map(|(prefix, base)| {
                let network = Ipv4Net::new(Ipv4Addr::from(base | 0x0a00_0000), prefix)
                    .expect("prefix is at most 32")
                    .trunc();
                let (lo, hi) = usable(network);
                (Just(network), lo..=hi, lo..=hi)
            })
            .prop_map(|(network, a, b)| {
                let (start, end) = (a.min(b), a.max(b));
                Model {
                    network,
                    start,
                    end,
                    allocated: BTreeSet::new(),
                    reserved: BTreeSet::new(),
                    cursor: start,
                    last_released: None,
                    just_released: None,
                    expect: Outcome::None,
                }
            })
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        let near = addr_near(state.network);
        let allocated: Vec<u32> = state.allocated.iter().copied().collect();
        let owned = if allocated.is_empty() {
            near.clone()
        } else {
            proptest::sample::select(allocated)
                .prop_map(Ipv4Addr::from)
                .boxed()
        };
        prop_oneof![
            6 => prop_oneof![
                Just(Strategy::LowestFree),
                Just(Strategy::NextFit),
                near.clone().prop_map(Strategy::Preferred),
            ]
            .prop_map(Op::Allocate),
            3 => near.clone().prop_map(Op::AllocateSpecific),
            3 => owned.prop_map(Op::Release),
            1 => near.clone().prop_map(Op::Release),
            2 => near.clone().prop_map(Op::Reserve),
            1 => near.clone().prop_map(Op::Unreserve),
            1 => (near.clone(), near).prop_map(|(a, b)| Op::Resize(a, b)),
            1 => Just(Op::Rebuild),
        ]
        .boxed()
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        let just_released = match op {
            Op::Release(ip) => Some(u32::from(*ip)),
            _ => None,
        };
        state.expect = match *op {
            Op::Allocate(strategy) => Outcome::Addr(state.allocate(strategy)),
            Op::AllocateSpecific(ip) => Outcome::Unit(state.allocate_specific(ip)),
            Op::Release(ip) => Outcome::Unit(state.release(ip)),
            Op::Reserve(ip) => Outcome::Bool(state.reserve(ip)),
            Op::Unreserve(ip) => Outcome::Unit(state.unreserve(ip)),
            Op::Resize(start, end) => Outcome::Unit(state.resize(start, end)),
            Op::Rebuild => {
                state.cursor = state.start;
                state.last_released = None;
                Outcome::None
            }
        };
        state.just_released = match state.expect {
            Outcome::Unit(Ok(())) => just_released,
            _ => None,
        };
        state
    }
}

struct PoolTest;

impl StateMachineTest for PoolTest {
    type SystemUnderTest = (Pool, Option<u32>);
    type Reference = PoolMachine;

    fn init_test(model: &Model) -> (Pool, Option<u32>) {
        let pool = Pool::new(model.network, model.start.into(), model.end.into())
            .expect("the model only generates valid pools");
        (pool, None)
    }

    fn apply(
        (mut pool, released_before): (Pool, Option<u32>),
        model: &Model,
        op: Op,
    ) -> (Pool, Option<u32>) {
        let got = match op {
            Op::Allocate(strategy) => {
                let free_before: Vec<u32> = free_addresses(&pool);
                let got = pool.allocate(strategy);
                if let Ok(ip) = got {
                    check_strategy(strategy, u32::from(ip), &free_before, released_before);
                }
                Outcome::Addr(got)
            }
            Op::AllocateSpecific(ip) => Outcome::Unit(pool.allocate_specific(ip)),
            Op::Release(ip) => Outcome::Unit(pool.release(ip)),
            Op::Reserve(ip) => Outcome::Bool(pool.reserve(ip)),
            Op::Unreserve(ip) => Outcome::Unit(pool.unreserve(ip)),
            Op::Resize(start, end) => Outcome::Unit(pool.resize(start, end)),
            Op::Rebuild => {
                let mut rebuilt = Pool::new(pool.network(), pool.start(), pool.end()).unwrap();
                for ip in pool.reserved() {
                    rebuilt.reserve(ip).unwrap();
                }
                rebuilt.restore(pool.allocated()).unwrap();
                assert_eq!(rebuilt, pool, "rebuild must give an identical pool");
                pool = rebuilt;
                Outcome::None
            }
        };
        assert_eq!(got, model.expect, "pool and model disagree on {op:?}");
        (pool, model.just_released)
    }

    fn check_invariants((pool, _): &(Pool, Option<u32>), model: &Model) {
        let in_range_reserved =
            u32::try_from(model.reserved.range(model.start..=model.end).count()).unwrap();
        assert_eq!(pool.capacity(), model.end - model.start + 1);
        assert_eq!(pool.used(), u32::try_from(model.allocated.len()).unwrap());
        assert_eq!(pool.reserved_in_range(), in_range_reserved);
        assert_eq!(
            pool.used() + pool.available() + pool.reserved_in_range(),
            pool.capacity()
        );
        let allocated: Vec<u32> = pool.allocated().map(u32::from).collect();
        assert_eq!(
            allocated,
            model.allocated.iter().copied().collect::<Vec<_>>()
        );
        let reserved: Vec<u32> = pool.reserved().map(u32::from).collect();
        assert_eq!(reserved, model.reserved.iter().copied().collect::<Vec<_>>());
        assert_eq!(free_addresses(pool), model.free().collect::<Vec<_>>());
        let lo = u32::from(model.network.network()).saturating_sub(2);
        let hi = u32::from(model.network.broadcast()).saturating_add(2);
        for ip in lo..=hi {
            let want = if model.reserved.contains(&ip) {
                AddrState::Reserved
            } else if !model.in_range(ip) {
                AddrState::OutOfRange
            } else if model.allocated.contains(&ip) {
                AddrState::Allocated
            } else {
                AddrState::Free
            };
            assert_eq!(
                pool.state(ip.into()),
                want,
                "state of {}",
                Ipv4Addr::from(ip)
            );
        }
    }
}

/// Free addresses according to `free_ranges`, expanded.
fn free_addresses(pool: &Pool) -> Vec<u32> {
    let runs: Vec<_> = pool.free_ranges().collect();
    for pair in runs.windows(2) {
        assert!(
            u32::from(*pair[0].end()) + 1 < u32::from(*pair[1].start()),
            "free ranges must be maximal and ascending: {runs:?}"
        );
    }
    runs.into_iter()
        .flat_map(|r| u32::from(*r.start())..=u32::from(*r.end()))
        .collect()
}

fn check_strategy(strategy: Strategy, ip: u32, free_before: &[u32], released_before: Option<u32>) {
    assert!(free_before.contains(&ip), "handed out a non-free address");
    match strategy {
        Strategy::LowestFree => assert_eq!(Some(&ip), free_before.first(), "not the lowest free"),
        Strategy::Preferred(want) if free_before.contains(&want.into()) => {
            assert_eq!(
                ip,
                u32::from(want),
                "a free preferred address must be taken"
            );
        }
        Strategy::NextFit => {
            if let Some(released) = released_before
                && free_before.len() > 1
            {
                assert_ne!(
                    ip, released,
                    "NextFit re-used the address released just before"
                );
            }
        }
        Strategy::Preferred(_) => {}
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        max_shrink_iters: 4096,
        .. ProptestConfig::default()
    })]

    #[test]
    fn pool_agrees_with_model(sequential 1..120 => PoolTest);
}
