//! Audio inside Confab: mono f32 samples in [-1, 1] at 48 kHz, moved in blocks of 10 ms (what echo
//! cancellation works on) and encoded in frames of 20 ms (what Opus sends).

/// Every sample inside the app runs at this rate; devices and files are resampled to it.
pub const SAMPLE_RATE_HZ: u32 = 48_000;

/// Samples in 10 ms.
pub const BLOCK_SAMPLES: usize = SAMPLE_RATE_HZ as usize / 100;

/// Samples in one 20 ms Opus frame.
pub const FRAME_SAMPLES: usize = 2 * BLOCK_SAMPLES;

/// Root-mean-square level in dBFS (-inf for silence).
pub fn rms_dbfs(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    10.0 * (energy / samples.len() as f64).log10()
}

/// Above this level (dBFS) someone is speaking: speech at a normal distance sits around -30 to
/// -20 dBFS after gain control, a quiet room under -50.
pub const SPEAKING_DBFS: f64 = -45.0;

/// How fast the level falls after a sound stops (dB per second): pauses between words keep the
/// speaking indicator on, a finished sentence lets it go within about a second.
const LEVEL_DECAY_DB_PER_S: f64 = 40.0;

/// The floor of the level (silence), so that it stays a finite number for JSON and drawing.
pub const LEVEL_FLOOR_DBFS: f64 = -100.0;

/// A loudness meter for "who is speaking": rises at once to each block's RMS level, falls
/// slowly after it (a peak hold with a decay).
#[derive(Debug, Clone, Copy)]
pub struct LevelMeter {
    level: f64,
}

impl Default for LevelMeter {
    fn default() -> Self {
        Self {
            level: LEVEL_FLOOR_DBFS,
        }
    }
}

impl LevelMeter {
    /// Takes the next block of 48 kHz samples; returns the level in dBFS.
    pub fn push(&mut self, samples: &[f32]) -> f64 {
        let ms = samples.len() as f64 * 1000.0 / f64::from(SAMPLE_RATE_HZ);
        let decayed = self.level - LEVEL_DECAY_DB_PER_S * ms / 1000.0;
        self.level = rms_dbfs(samples).max(decayed).max(LEVEL_FLOOR_DBFS);
        self.level
    }

    pub fn level(&self) -> f64 {
        self.level
    }
}

/// Goertzel power of the `hz` component of `samples` taken at `rate_hz` (unnormalized: it grows
/// with the square of the length).
pub fn goertzel_power(samples: &[f32], hz: f64, rate_hz: u32) -> f64 {
    let k = 2.0 * (std::f64::consts::TAU * hz / f64::from(rate_hz)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - k * s1 * s2
}

/// Power of the `hz` component per sample squared, comparable between windows of any length.
pub fn tone_power(samples: &[f32], hz: f64, rate_hz: u32) -> f64 {
    goertzel_power(samples, hz, rate_hz) / (samples.len().max(1) as f64).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_meter_rises_at_once_and_falls_slowly() {
        let mut meter = LevelMeter::default();
        assert_eq!(meter.level(), LEVEL_FLOOR_DBFS);
        let speech = [0.1f32; BLOCK_SAMPLES]; // -20 dBFS
        let silence = [0.0f32; BLOCK_SAMPLES];
        assert!((meter.push(&speech) + 20.0).abs() < 1e-6);
        // A 200 ms pause between words: still speaking.
        for _ in 0..20 {
            meter.push(&silence);
        }
        assert!(meter.level() > SPEAKING_DBFS, "{}", meter.level());
        assert!((meter.level() + 28.0).abs() < 1e-6, "{}", meter.level());
        // A second of silence: no longer speaking; and never below the floor.
        for _ in 0..100 {
            meter.push(&silence);
        }
        assert!(meter.level() < SPEAKING_DBFS);
        for _ in 0..1000 {
            meter.push(&silence);
        }
        assert_eq!(meter.level(), LEVEL_FLOOR_DBFS);
        // Quiet room noise (-60 dBFS) is not speech.
        let mut meter = LevelMeter::default();
        for _ in 0..50 {
            meter.push(&[0.001f32; BLOCK_SAMPLES]);
        }
        assert!(meter.level() < SPEAKING_DBFS);
    }

    #[test]
    fn levels() {
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
        assert!((rms_dbfs(&[1.0, -1.0]) - 0.0).abs() < 1e-9);
        assert!((rms_dbfs(&[0.5; 10]) + 6.0206).abs() < 1e-3);
    }
}
