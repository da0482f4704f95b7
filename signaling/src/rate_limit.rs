//! A token bucket: `rate` tokens a second, holding at most `burst`. Time is a parameter so that
//! tests drive it.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        Self::per_period(rate_per_sec, Duration::from_secs(1), burst, now)
    }

    /// `count` tokens every `period` (e.g. 10 a minute), holding at most `burst`.
    pub fn per_period(count: u32, period: Duration, burst: u32, now: Instant) -> Self {
        Self {
            rate_per_sec: f64::from(count) / period.as_secs_f64().max(1e-9),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate_per_sec).min(self.burst);
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(1, now)
    }

    /// Takes `n` tokens if there are that many (e.g. one per byte); takes none otherwise.
    pub fn try_take_n(&mut self, n: usize, now: Instant) -> bool {
        self.refill(now);
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely by `now` (it then carries no history and can
    /// be forgotten).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.tokens + elapsed.as_secs_f64() * self.rate_per_sec >= self.burst
    }

    /// How long until one token is available.
    pub fn wait_time(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate_per_sec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 5, t0);
        let taken = (0..20).filter(|_| bucket.try_take(t0)).count();
        assert_eq!(taken, 5, "the burst");
        assert!(
            !bucket.try_take(t0 + Duration::from_millis(50)),
            "half a token"
        );
        assert!(
            bucket.try_take(t0 + Duration::from_millis(100)),
            "one token after 100 ms"
        );
        // One second later: ten more tokens, but never more than the burst.
        let t1 = t0 + Duration::from_millis(1100);
        let taken = (0..20).filter(|_| bucket.try_take(t1)).count();
        assert_eq!(taken, 5);
    }

    #[test]
    fn bytes_are_taken_all_or_nothing_and_slow_rates_work() {
        let t0 = Instant::now();
        let mut bytes = TokenBucket::new(1000, 4000, t0);
        assert!(bytes.try_take_n(3000, t0));
        assert!(!bytes.try_take_n(1500, t0), "only 1000 left");
        assert!(bytes.try_take_n(1000, t0), "a refused take took nothing");
        assert!(bytes.try_take_n(500, t0 + Duration::from_millis(500)));

        let mut per_minute = TokenBucket::per_period(10, Duration::from_secs(60), 2, t0);
        assert!(per_minute.try_take(t0) && per_minute.try_take(t0));
        assert!(
            !per_minute.try_take(t0 + Duration::from_secs(5)),
            "one per 6 s"
        );
        assert!(!per_minute.is_full(t0 + Duration::from_secs(7)));
        assert!(per_minute.try_take(t0 + Duration::from_secs(7)));
        assert!(per_minute.is_full(t0 + Duration::from_secs(20)));
    }

    #[test]
    fn wait_time_tells_when_the_next_token_comes() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(4, 1, t0);
        assert_eq!(bucket.wait_time(), Duration::ZERO);
        assert!(bucket.try_take(t0));
        let wait = bucket.wait_time();
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-9, "{wait:?}");
    }
}
