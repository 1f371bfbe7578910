//! Group commit of one IPPool's allocations and releases, pure. NICs that wait for the same
//! pool's writer are applied together to one copy of its status and written in one status
//! update; a conflict redoes the whole batch on the fresh status. One pool has one writer in
//! this process ([`crate::context::Context::submit`] is the IO), so what limits allocation at
//! scale is the number of status writes and the size of each (the whole `allocated` map):
//! one write per batch instead of one per NIC.
//!
//! - which operations join a batch: [`take`] (first come, first served, at most
//!   [`BatchSettings::max`]);
//! - what a batch writes: [`apply`] (each operation on its own, one failing operation does not
//!   hold the others back; counters and `lastUpdate` once);
//! - what a conflict redoes: [`after_write`] (everything, on the status read again).
//!
//! Besides allocations and releases, a batch carries address conflicts
//! ([`PoolOp::Conflict`]): a client declined its address, which becomes the `CONFLICT` mark,
//! and its NIC gets another address in the same status write ([`mark_conflict`]).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use jiff::Timestamp;
use vmdhcp_api::MacAddr;
use vmdhcp_api::ippool::IPPool;

use crate::alloc::{self, Allocated, Allocator, Request};

/// How batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// At most this many operations per status write (1: one write per NIC, the shape before
    /// group commit).
    pub max: usize,
    /// How long the writer waits for more operations before a write that is not full. The
    /// writer is busy with the previous write while most operations arrive, so batches form
    /// without waiting; this only helps a burst's first write.
    pub wait: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max: DEFAULT_MAX,
            wait: DEFAULT_WAIT,
        }
    }
}

/// Default [`BatchSettings::max`] (see docs/performance.md for the measurement).
pub const DEFAULT_MAX: usize = 500;
/// Default [`BatchSettings::wait`].
pub const DEFAULT_WAIT: Duration = Duration::from_millis(0);

/// A NIC's address request, owned (it waits in a queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicRequest {
    /// The MAC as the vmnetcfg writes it (recorded in the pool as is).
    pub mac_text: String,
    /// The MAC, parsed.
    pub mac: MacAddr,
    /// The address the spec asks for.
    pub desired: Option<Ipv4Addr>,
    /// The address the vmnetcfg's status last recorded (preferred when free).
    pub previous: Option<Ipv4Addr>,
}

/// One change to a pool's allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolOp {
    /// Give a NIC its address ([`alloc::allocate`]).
    Allocate(NicRequest),
    /// Give `ip` back if `mac` holds it ([`alloc::release`]).
    Release {
        /// The address.
        ip: Ipv4Addr,
        /// Its holder.
        mac: MacAddr,
    },
    /// `mac` declined `ip` (another host uses it): if `mac` holds it, the allocation becomes
    /// the `CONFLICT` mark and `nic`, the NIC of that MAC, gets another address
    /// ([`mark_conflict`]).
    Conflict {
        /// The declined address.
        ip: Ipv4Addr,
        /// The MAC that declined it.
        mac: MacAddr,
        /// The NIC to give another address, when a vmnetcfg has one with that MAC on the
        /// pool's network (`None`: the mark alone).
        nic: Option<NicRequest>,
    },
}

/// What became of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    /// The NIC's address, and whether the status changed for it.
    Allocated(Allocated),
    /// The NIC got no address: upstream's message (exhausted, designated address taken, …).
    Refused(String),
    /// Whether the release changed the status.
    Released(bool),
    /// What became of a conflict.
    Conflict(Marked),
}

/// What [`mark_conflict`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// `allocated` does not map the address to the MAC (any more): released, moved, or marked
    /// already (a report handled before). Nothing changed.
    NotHeld,
    /// The allocation is now the `CONFLICT` mark; and the NIC's new address, or why it got
    /// none (`None`: no NIC was given).
    Marked(Option<Result<Allocated, String>>),
}

impl OpOutcome {
    /// Whether the pool status changed for this operation.
    pub fn changed(&self) -> bool {
        match self {
            Self::Allocated(a) => a.new,
            Self::Refused(_) | Self::Conflict(Marked::NotHeld) => false,
            Self::Released(released) => *released,
            Self::Conflict(Marked::Marked(_)) => true,
        }
    }
}

/// Takes the next batch from `queue`: the oldest `max` entries (at least one when any wait),
/// in arrival order, so that lowest-free addresses go out in the order NICs asked.
pub fn take<T>(queue: &mut VecDeque<T>, max: usize) -> Vec<T> {
    let n = queue.len().min(max.max(1));
    queue.drain(..n).collect()
}

/// Applies `ops` in order to `pool`'s status and `alloc` (both as read for this attempt) and,
/// when any of them changed the status, refreshes the counters and marks once and stamps
/// `lastUpdate`. Returns each operation's outcome; the status is to be written when
/// [`any_changed`] says so.
pub fn apply(
    pool: &mut IPPool,
    alloc: &mut Allocator,
    ops: &[PoolOp],
    now: Timestamp,
) -> Vec<OpOutcome> {
    let outcomes: Vec<OpOutcome> = ops
        .iter()
        .map(|op| match op {
            PoolOp::Allocate(nic) => {
                let req = Request {
                    mac_text: &nic.mac_text,
                    mac: nic.mac,
                    desired: nic.desired,
                    previous: nic.previous,
                };
                match alloc::allocate(pool, alloc, &req) {
                    Ok(done) => OpOutcome::Allocated(done),
                    Err(message) => OpOutcome::Refused(message),
                }
            }
            PoolOp::Release { ip, mac } => {
                OpOutcome::Released(alloc::release(pool, alloc, *ip, mac))
            }
            PoolOp::Conflict { ip, mac, nic } => {
                OpOutcome::Conflict(mark_conflict(pool, alloc, *ip, mac, nic.as_ref()))
            }
        })
        .collect();
    if any_changed(&outcomes) {
        let status = pool.status.get_or_insert_with(Default::default);
        vmdhcp_api::status::refresh_ipv4(status, &pool.spec.ipv4_config, &alloc.ipam);
        vmdhcp_api::status::touch(status, now);
    }
    outcomes
}

/// Marks `ip`, which `mac` declined, in conflict in `pool`'s status and `alloc` (both as read
/// for this attempt), when `mac` holds it: the allocation becomes the `CONFLICT` mark, which
/// keeps the address used (the allocator never hands it out again, `used` counts it) and
/// belongs to nobody. Then `nic` gets another address as any NIC would
/// ([`alloc::allocate`]), without preferring the declined one: its desired address if it has
/// one (which fails when that is the declined address: the mark stays, and the NIC waits for
/// an operator), else the lowest free. Idempotent: a second report of the same conflict finds
/// the mark, not the MAC, and changes nothing.
pub fn mark_conflict(
    pool: &mut IPPool,
    alloc: &mut Allocator,
    ip: Ipv4Addr,
    mac: &MacAddr,
    nic: Option<&NicRequest>,
) -> Marked {
    if alloc.address_of(mac) != Some(ip) {
        return Marked::NotHeld;
    }
    let status = pool.status.get_or_insert_with(Default::default);
    if !vmdhcp_api::status::mark_conflict(status, ip, mac) {
        return Marked::NotHeld;
    }
    // The MAC lets go of the address (its record is the mark now, which release leaves alone)
    // and the mark takes it, so it stays used.
    alloc::release(pool, alloc, ip, mac);
    // Cannot fail: the address was released just now. (Were it to, the status still holds the
    // mark, and the next rebuild takes the address for it.)
    let _ = alloc.ipam.allocate_specific(ip);
    Marked::Marked(nic.map(|nic| {
        alloc::allocate(
            pool,
            alloc,
            &Request {
                mac_text: &nic.mac_text,
                mac: nic.mac,
                desired: nic.desired,
                previous: None,
            },
        )
    }))
}

/// Whether the batch changed the status (and must be written).
pub fn any_changed(outcomes: &[OpOutcome]) -> bool {
    outcomes.iter().any(OpOutcome::changed)
}

/// How a status write of a batch went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Stored.
    Ok,
    /// `409 Conflict`: someone wrote the pool after the version this batch was applied to.
    Conflict,
    /// Any other failure, with its message.
    Failed(String),
}

/// What the writer does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Hand every operation its outcome.
    Deliver,
    /// Read the pool again and apply the whole batch anew to that status: an outcome computed
    /// on the old version (an address someone else has taken since, a release someone else
    /// already made) is never handed out.
    Redo,
    /// Every operation of the batch fails with this message; each NIC is retried with its own
    /// backoff.
    Fail(String),
}

/// Decides after attempt `attempt` (from 1) of at most `attempts`.
pub fn after_write(written: &Written, attempt: u32, attempts: u32) -> Next {
    match written {
        Written::Ok => Next::Deliver,
        Written::Conflict if attempt < attempts => Next::Redo,
        Written::Conflict => Next::Fail(format!(
            "status kept changing under us ({attempts} attempts); will retry"
        )),
        Written::Failed(message) => Next::Fail(message.clone()),
    }
}

/// The most an Event's note may hold (events.k8s.io/v1 refuses longer ones).
pub const NOTE_LIMIT: usize = 1024;

/// What a batch did, as Events on the pool: one `Allocated` and one `Released` per batch, not
/// one per NIC (at cluster scale an Event per allocation would be as many writes as the
/// allocations themselves). `items` are (address, MAC, vmnetcfg `ns/name`) in batch order;
/// the note names as many as fit in [`NOTE_LIMIT`] and counts the rest.
pub fn event_note(released: bool, pool: &str, items: &[(Ipv4Addr, String, String)]) -> String {
    let (verb, to, mac_word) = if released {
        ("released", "to", "of mac")
    } else {
        ("allocated", "from", "to mac")
    };
    if let [(ip, mac, owner)] = items {
        return format!("{ip} {mac_word} {mac} of vmnetcfg {owner} {verb} {to} ippool {pool}");
    }
    let mut note = format!("{} addresses {verb} {to} ippool {pool}:", items.len());
    for (i, (ip, mac, owner)) in items.iter().enumerate() {
        let entry = format!(" {ip} {mac_word} {mac} of vmnetcfg {owner};");
        let rest = items.len() - i;
        let more = format!(" and {rest} more");
        // Room for this entry and, when it is not the last, for the count of those after it.
        let need = entry.len() + if rest > 1 { " and 99999 more".len() } else { 0 };
        if note.len() + need > NOTE_LIMIT {
            note.push_str(&more);
            return note;
        }
        note.push_str(&entry);
    }
    note.pop();
    note
}

#[cfg(test)]
mod tests;
