//! Paces a source to a fixed rate against the monotonic clock, without drifting: tick n is due at
//! start + n x interval. A source that falls more than one tick behind skips ahead instead of
//! bursting to catch up.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    interval: Duration,
    tick: u64,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Self {
            start: Instant::now(),
            interval,
            tick: 0,
        }
    }

    /// When tick `n` is due.
    fn due(&self, n: u64) -> Instant {
        self.start + self.interval.mul_f64(n as f64)
    }

    /// Sleeps until the next tick and returns its number.
    pub fn wait(&mut self) -> u64 {
        let now = Instant::now();
        let due = self.due(self.tick);
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > self.interval {
            // Far behind (the machine was busy): resume from now.
            let behind = ((now - self.start).as_secs_f64() / self.interval.as_secs_f64()) as u64;
            self.tick = behind;
        }
        let tick = self.tick;
        self.tick += 1;
        tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_at_the_rate_without_drift() {
        let mut pacer = Pacer::new(Duration::from_millis(5));
        let start = Instant::now();
        for expected in 0..10 {
            assert_eq!(pacer.wait(), expected);
        }
        // 10 ticks at 5 ms: tick 9 is due at 45 ms. Only a lower bound is asserted (sleeping may
        // overshoot on a busy machine).
        assert!(start.elapsed() >= Duration::from_millis(44));
    }

    #[test]
    fn skips_ahead_when_far_behind() {
        let mut pacer = Pacer::new(Duration::from_millis(2));
        pacer.wait();
        std::thread::sleep(Duration::from_millis(20));
        let tick = pacer.wait();
        assert!(tick >= 9, "resumed near now, not at tick 1: {tick}");
    }
}
