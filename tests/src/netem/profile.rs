//! The link conditions the emulator plays, as data: a `Profile` for one uplink (rate, delay,
//! jitter, loss) and a `Scenario` of profiles over time, with the ones issue 10 names.

use std::time::Duration;

/// What one uplink does to the packets leaving a home (both directions of a call are shaped
/// when both routers get a profile: "40 ms each way" means 80 ms round trip between the homes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// Token-bucket rate limit; `None`: as fast as the veth goes.
    pub rate_kbps: Option<u32>,
    /// One-way delay added to every packet.
    pub delay_ms: u32,
    /// Uniform jitter, +- this much (packets are never reordered).
    pub jitter_ms: u32,
    /// Share of packets lost, in percent.
    pub loss_pct: f64,
    /// Mean length of a loss burst in packets; 1 is independent (random) loss.
    pub burst_pkts: f64,
}

impl Profile {
    /// No shaping at all.
    pub const GOOD: Self = Self {
        name: "good",
        rate_kbps: None,
        delay_ms: 0,
        jitter_ms: 0,
        loss_pct: 0.0,
        burst_pkts: 1.0,
    };
    pub const HOME: Self = Self {
        name: "home",
        rate_kbps: Some(3_000),
        delay_ms: 20,
        ..Self::GOOD
    };
    pub const CONSTRAINED: Self = Self {
        name: "constrained",
        rate_kbps: Some(1_000),
        delay_ms: 40,
        ..Self::GOOD
    };
    pub const WIFI_LOSSY: Self = Self {
        name: "wifi-lossy",
        delay_ms: 40,
        loss_pct: 5.0,
        ..Self::GOOD
    };
    pub const VERY_BAD: Self = Self {
        name: "very-bad",
        rate_kbps: Some(1_000),
        delay_ms: 250,
        loss_pct: 10.0,
        ..Self::GOOD
    };
    pub const THREE_G: Self = Self {
        name: "3g",
        rate_kbps: Some(400),
        delay_ms: 175,
        ..Self::GOOD
    };
    /// The "drop" scenario's normal link and its dip.
    pub const DROP_HIGH: Self = Self {
        name: "drop-3mbit",
        rate_kbps: Some(3_000),
        ..Self::GOOD
    };
    pub const DROP_LOW: Self = Self {
        name: "drop-500kbit",
        rate_kbps: Some(500),
        ..Self::GOOD
    };
}

/// One change of a `Scenario`: from `at` (after the scenario starts), both uplinks get `profile`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub profile: Profile,
}

/// A profile over time, as data: what `NetLab::play` applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: &'static str,
    /// In time order; the first is at zero.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// How long the "drop" scenario's dip lasts.
    pub const DROP_LENGTH: Duration = Duration::from_secs(15);

    /// One profile for the whole run.
    pub fn steady(profile: Profile) -> Self {
        Self {
            name: profile.name,
            steps: vec![Step {
                at: Duration::ZERO,
                profile,
            }],
        }
    }

    /// 3 Mbit/s, down to 500 kbit/s at `dip_at` for `DROP_LENGTH`, then 3 Mbit/s again.
    pub fn drop(dip_at: Duration) -> Self {
        let step = |at, profile| Step { at, profile };
        Self {
            name: "drop",
            steps: vec![
                step(Duration::ZERO, Profile::DROP_HIGH),
                step(dip_at, Profile::DROP_LOW),
                step(dip_at + Self::DROP_LENGTH, Profile::DROP_HIGH),
            ],
        }
    }

    /// Every profile the issue names, the drop dipping after `dip_at` (for benchmarks).
    pub fn all(dip_at: Duration) -> Vec<Self> {
        let mut all: Vec<Self> = [
            Profile::GOOD,
            Profile::HOME,
            Profile::CONSTRAINED,
            Profile::WIFI_LOSSY,
            Profile::VERY_BAD,
            Profile::THREE_G,
        ]
        .into_iter()
        .map(Self::steady)
        .collect();
        all.push(Self::drop(dip_at));
        all
    }
}
