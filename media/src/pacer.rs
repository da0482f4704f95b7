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
        // Timed before the pacer starts, so that elapsed here is never less than the pacer's.
        let start = Instant::now();
        let interval = Duration::from_millis(5);
        let mut pacer = Pacer::new(interval);
        let at = |tick: u64| interval * tick as u32;
        let mut previous: Option<u64> = None;
        for _ in 0..10 {
            let tick = pacer.wait();
            let elapsed = start.elapsed();
            // Never early: tick n comes n intervals in (sleeping may overshoot, so no upper
            // bound on a busy machine).
            assert!(elapsed >= at(tick), "tick {tick} at {elapsed:?}");
            match previous {
                None => assert_eq!(tick, 0, "the first tick"),
                // The next tick, unless this thread was descheduled for more than an interval
                // (the test runs beside others): then it resumes from now, never bursting.
                Some(p) if tick != p + 1 => {
                    assert!(tick > p + 1, "ticks go forward: {p} then {tick}");
                    assert!(
                        elapsed > at(p + 2),
                        "skipped from {p} to {tick} at {elapsed:?} without being behind"
                    );
                }
                Some(_) => {}
            }
            previous = Some(tick);
        }
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
