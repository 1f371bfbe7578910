//! A model of the upstream Go allocator (`pkg/ipam` of harvester/vm-dhcp-controller), used as
//! the baseline in the `ipam` benchmark.
//!
//! Upstream keeps, per pool, a Go `map[string]bool` with one entry per address of the range
//! (key = dotted-quad string, value = allocated) and takes the first free entry in map
//! iteration order. Go starts each map iteration at a random bucket, so that is modelled here
//! with an open-addressing table of `(String, bool)` slots in hash order and a pseudo-random
//! start slot per scan — the same costs (string formatting and hashing per lookup, a scan over
//! allocated entries per allocation, O(range) memory and O(range) `used`/`available`) without
//! the quadratic behaviour a fixed iteration start would add.

use std::net::Ipv4Addr;

/// The upstream-style allocator: one map entry per address.
pub struct GoMapIpam {
    slots: Vec<Option<(String, bool)>>,
    mask: usize,
    rng: u64,
}

impl GoMapIpam {
    /// A pool over `[start, end]` minus the revoked addresses (server, router, excludes).
    pub fn new(start: Ipv4Addr, end: Ipv4Addr, revoked: &[Ipv4Addr]) -> Self {
        let n = (u32::from(end) - u32::from(start) + 1) as usize;
        // Go grows a map at 6.5 entries per 8-slot bucket: about 80 % full.
        let capacity = (n * 5 / 4).next_power_of_two().max(8);
        let mut map = Self {
            slots: vec![None; capacity],
            mask: capacity - 1,
            rng: 0x9E37_79B9_7F4A_7C15,
        };
        for ip in u32::from(start)..=u32::from(end) {
            let ip = Ipv4Addr::from(ip);
            if !revoked.contains(&ip) {
                let key = ip.to_string();
                let at = map.find(&key);
                map.slots[at] = Some((key, false));
            }
        }
        map
    }

    fn hash(key: &str) -> usize {
        // FNV-1a: a string hash of the same order of cost as Go's aeshash for short keys.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        usize::try_from(h >> 16).unwrap_or(usize::MAX)
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn find(&self, key: &str) -> usize {
        let mut at = Self::hash(key) & self.mask;
        loop {
            match &self.slots[at] {
                Some((k, _)) if k != key => at = (at + 1) & self.mask,
                _ => return at,
            }
        }
    }

    fn next_random(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        usize::try_from(self.rng >> 16).unwrap_or(usize::MAX)
    }

    /// First free entry in iteration order from a random start (Go's `for ip, used := range`).
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let start = self.next_random() & self.mask;
        let len = self.slots.len();
        for i in 0..len {
            if let Some((key, used)) = &mut self.slots[(start + i) & self.mask]
                && !*used
            {
                *used = true;
                return key.parse().ok();
            }
        }
        None
    }

    /// Upstream's designated allocation: format, look up, mark.
    pub fn allocate_specific(&mut self, ip: Ipv4Addr) -> Result<(), &'static str> {
        let key = ip.to_string();
        let at = self.find(&key);
        match &mut self.slots[at] {
            Some((_, used)) if !*used => {
                *used = true;
                Ok(())
            }
            Some(_) => Err("already allocated"),
            None => Err("not in range"),
        }
    }

    /// Upstream's deallocation: format, look up, clear.
    pub fn release(&mut self, ip: Ipv4Addr) -> Result<(), &'static str> {
        let key = ip.to_string();
        let at = self.find(&key);
        match &mut self.slots[at] {
            Some((_, used)) if *used => {
                *used = false;
                Ok(())
            }
            Some(_) => Err("not allocated"),
            None => Err("not in range"),
        }
    }

    /// Upstream counts by iterating the whole map.
    pub fn used(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|(_, used)| *used)
            .count()
    }

    /// Upstream counts by iterating the whole map.
    pub fn available(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|(_, used)| !*used)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_an_allocator() {
        let start: Ipv4Addr = "10.0.0.1".parse().unwrap();
        let end: Ipv4Addr = "10.0.0.10".parse().unwrap();
        let mut m = GoMapIpam::new(start, end, &["10.0.0.1".parse().unwrap()]);
        assert_eq!(m.available(), 9);
        let mut got: Vec<Ipv4Addr> = std::iter::from_fn(|| m.allocate()).collect();
        got.sort();
        assert_eq!(got.len(), 9);
        assert_eq!(got[0], "10.0.0.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!((m.used(), m.available()), (9, 0));
        m.release("10.0.0.5".parse().unwrap()).unwrap();
        assert!(m.release("10.0.0.5".parse().unwrap()).is_err());
        m.allocate_specific("10.0.0.5".parse().unwrap()).unwrap();
        assert!(m.allocate_specific("10.0.0.1".parse().unwrap()).is_err());
    }
}
