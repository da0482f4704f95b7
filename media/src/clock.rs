//! Wall-clock time in microseconds since the Unix epoch: what stamps carry, so two processes on one
//! machine (or two machines with synced clocks) can compute glass-to-glass latency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, from the system clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
