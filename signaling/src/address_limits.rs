//! What one client address may take from the server: how many WebSocket connections it holds
//! (and how many the server holds in total), and how often it gets TURN credentials. An IPv6
//! address counts by its /64, since one host is usually handed a whole /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::TokenBucket;

/// The unit a per-address limit counts: an IPv4 address or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AddressKey(u128);

impl AddressKey {
    pub fn of(ip: IpAddr) -> Self {
        // IPv4 as its mapped IPv6 address (low 64 bits 0000:ffff:a.b.c.d); IPv6 as its /64
        // prefix with the low 64 bits set to 1, which no mapped address has.
        match ip {
            IpAddr::V4(v4) => Self(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(u128::from(v4.to_ipv6_mapped())),
                None => Self((u128::from(v6) & !u128::from(u64::MAX)) | 1),
            },
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections below only count; a panic inside one leaves the counts usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapExceeded {
    PerAddress(usize),
    Total(usize),
}

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PerAddress(cap) => write!(
                f,
                "too many connections from your address (the limit is {cap}); close some and retry"
            ),
            Self::Total(cap) => write!(
                f,
                "the server is full ({cap} connections); try again in a minute"
            ),
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<AddressKey, usize>,
}

/// Connection caps per address and in total.
pub(crate) struct ConnectionCaps {
    per_address_cap: usize,
    total_cap: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it frees its place.
pub(crate) struct ConnectionSlot {
    key: AddressKey,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionCaps {
    pub fn new(per_address_cap: usize, total_cap: usize) -> Self {
        Self {
            per_address_cap,
            total_cap,
            counts: Arc::default(),
        }
    }

    /// Admits one more connection from `ip`, or says which cap it would exceed.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnectionSlot, CapExceeded> {
        let key = AddressKey::of(ip);
        let mut counts = lock(&self.counts);
        if counts.total >= self.total_cap {
            return Err(CapExceeded::Total(self.total_cap));
        }
        let mine = counts.per_address.entry(key).or_insert(0);
        if *mine >= self.per_address_cap {
            return Err(CapExceeded::PerAddress(self.per_address_cap));
        }
        *mine += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            key,
            counts: self.counts.clone(),
        })
    }

    /// (connections, distinct addresses)
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let counts = lock(&self.counts);
        (counts.total, counts.per_address.len())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(mine) = counts.per_address.get_mut(&self.key) {
            *mine -= 1;
            if *mine == 0 {
                counts.per_address.remove(&self.key);
            }
        }
    }
}

/// Addresses remembered before the mint limiter forgets the ones back to a full bucket.
const MINT_PRUNE_AT: usize = 1024;

/// How often each address may be handed TURN credentials: a token bucket per address.
pub(crate) struct MintLimiter {
    per_minute: u32,
    state: Mutex<MintState>,
}

struct MintState {
    buckets: HashMap<AddressKey, TokenBucket>,
    prune_at: usize,
}

impl MintLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            state: Mutex::new(MintState {
                buckets: HashMap::new(),
                prune_at: MINT_PRUNE_AT,
            }),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one hand-out for `key` if its bucket allows it.
    pub fn try_mint(&self, key: AddressKey, now: Instant) -> bool {
        let mut state = lock(&self.state);
        if state.buckets.len() >= state.prune_at {
            // A full bucket carries no history: forgetting it changes nothing. What remains is
            // the addresses that got credentials within the last minute or so.
            state.buckets.retain(|_, bucket| !bucket.is_full(now));
            state.prune_at = (state.buckets.len() * 2).max(MINT_PRUNE_AT);
        }
        let per_minute = self.per_minute;
        state
            .buckets
            .entry(key)
            .or_insert_with(|| {
                TokenBucket::per_period(per_minute, Duration::from_secs(60), per_minute, now)
            })
            .try_take(now)
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        lock(&self.state).buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_count_by_ipv4_or_ipv6_slash_64() {
        let cases = [
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1", "10.0.0.2", false),
            ("10.0.0.1", "::ffff:10.0.0.1", true),
            ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true),
            ("2001:db8:1:2::1", "2001:db8:1:3::1", false),
            ("0.0.0.1", "::1", false),
            ("0.0.0.1", "::", false),
            ("0.0.0.0", "::", false),
        ];
        for (a, b, same) in cases {
            assert_eq!(
                AddressKey::of(ip(a)) == AddressKey::of(ip(b)),
                same,
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn caps_per_address_and_in_total_and_slots_free_on_drop() {
        let caps = ConnectionCaps::new(2, 3);
        let a1 = caps.admit(ip("10.0.0.1")).unwrap();
        let a2 = caps.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            caps.admit(ip("10.0.0.1")).err(),
            Some(CapExceeded::PerAddress(2))
        );
        let b1 = caps.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            caps.admit(ip("10.0.0.3")).err(),
            Some(CapExceeded::Total(3))
        );
        drop(a1);
        let a3 = caps.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(caps.counts(), (3, 2));
        drop((a2, a3, b1));
        assert_eq!(
            caps.counts(),
            (0, 0),
            "no address is remembered for nothing"
        );
        assert!(CapExceeded::PerAddress(64).to_string().contains("64"));
    }

    #[test]
    fn mints_are_limited_per_address_and_forgotten_once_refilled() {
        let t0 = Instant::now();
        let limiter = MintLimiter::new(3);
        let a = AddressKey::of(ip("10.0.0.1"));
        let b = AddressKey::of(ip("10.0.0.2"));
        let granted = (0..10).filter(|_| limiter.try_mint(a, t0)).count();
        assert_eq!(granted, 3, "a burst of the per-minute count");
        assert!(limiter.try_mint(b, t0), "another address is not affected");
        assert!(!limiter.try_mint(a, t0 + Duration::from_secs(10)));
        assert!(
            limiter.try_mint(a, t0 + Duration::from_secs(21)),
            "one per 20 s"
        );

        // A stream of new addresses, 500 a minute for ten minutes: those whose bucket refilled
        // are forgotten, so memory follows the recent addresses, not all addresses ever seen.
        let mut next_ip = 0u32;
        for minute in 1..=10 {
            let now = t0 + Duration::from_secs(60 * minute);
            for _ in 0..500 {
                next_ip += 1;
                let key = AddressKey::of(IpAddr::V4(std::net::Ipv4Addr::from(next_ip)));
                assert!(limiter.try_mint(key, now));
            }
            assert!(
                limiter.remembered() <= 2 * MINT_PRUNE_AT,
                "minute {minute}: {} addresses remembered",
                limiter.remembered()
            );
        }
    }
}
