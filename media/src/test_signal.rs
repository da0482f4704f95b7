//! The synthetic test sound: a pure function of wall-clock time. A steady 440 Hz tone, and at the
//! start of every wall-clock second a 60 ms burst at 2400 Hz. A receiver that finds the onset of a
//! burst in what it plays knows the glass-to-glass latency (onset time modulo one second, valid
//! while latency stays under a second).

use std::f64::consts::TAU;

use super::SAMPLE_RATE_HZ;

const MARKER_HZ: f64 = 2400.0;
const TONE_HZ: f64 = 440.0;
const MARKER_US: u64 = 60_000;
const PERIOD_US: u64 = 1_000_000;

/// The test signal at wall-clock time `t_us`.
pub fn sample_at(t_us: u64) -> f32 {
    let t = t_us as f64 / 1e6;
    if t_us % PERIOD_US < MARKER_US {
        (0.5 * (TAU * MARKER_HZ * t).sin()) as f32
    } else {
        (0.2 * (TAU * TONE_HZ * t).sin()) as f32
    }
}

/// Fills `out` with the signal for samples starting at `start_us`.
pub fn fill(out: &mut [f32], start_us: u64) {
    for (i, s) in out.iter_mut().enumerate() {
        *s = sample_at(start_us + i as u64 * 1_000_000 / u64::from(SAMPLE_RATE_HZ));
    }
}

/// Samples per detection window (2.5 ms).
const WINDOW: usize = SAMPLE_RATE_HZ as usize / 400;

fn goertzel_power(samples: &[f32], hz: f64) -> f64 {
    crate::audio::goertzel_power(samples, hz, SAMPLE_RATE_HZ)
}

/// Finds burst onsets in received audio and turns them into latencies.
#[derive(Debug, Default)]
pub struct MarkerDetector {
    pending: Vec<f32>,
    /// Wall-clock time of `pending[0]`.
    pending_start_us: u64,
    in_marker: bool,
}

impl MarkerDetector {
    /// Feeds samples whose first one was played at `start_us`; returns latencies (µs) of the
    /// burst onsets found.
    pub fn push(&mut self, samples: &[f32], start_us: u64) -> Vec<u64> {
        if self.pending.is_empty() {
            self.pending_start_us = start_us;
        }
        self.pending.extend_from_slice(samples);
        let mut found = Vec::new();
        let mut consumed = 0;
        while self.pending.len() - consumed >= WINDOW {
            let window = &self.pending[consumed..consumed + WINDOW];
            let marker = goertzel_power(window, MARKER_HZ);
            let tone = goertzel_power(window, TONE_HZ);
            let energy: f64 =
                window.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / WINDOW as f64;
            // Loud enough (above -30 dBFS) and clearly the marker frequency.
            let is_marker = energy > 1e-3 && marker > 4.0 * tone;
            if is_marker && !self.in_marker {
                let at =
                    self.pending_start_us + consumed as u64 * 1_000_000 / u64::from(SAMPLE_RATE_HZ);
                found.push(at % PERIOD_US);
            }
            self.in_marker = is_marker;
            consumed += WINDOW;
        }
        self.pending.drain(..consumed);
        self.pending_start_us += consumed as u64 * 1_000_000 / u64::from(SAMPLE_RATE_HZ);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_delayed_markers() {
        // Play the signal delayed by 137 ms, in 20 ms blocks, over 3.5 seconds.
        let delay_us = 137_000;
        let mut detector = MarkerDetector::default();
        let mut latencies = Vec::new();
        let start = 1_700_000_000_000_000u64 + 250_000;
        let mut block = vec![0f32; 960];
        for n in 0..175u64 {
            let play_us = start + n * 20_000;
            fill(&mut block, play_us - delay_us);
            latencies.extend(detector.push(&block, play_us));
        }
        assert_eq!(latencies.len(), 3, "{latencies:?}");
        for l in latencies {
            assert!(l.abs_diff(delay_us) <= 2_500, "{l}");
        }
    }

    #[test]
    fn silence_and_plain_tone_have_no_markers() {
        let mut detector = MarkerDetector::default();
        assert!(detector.push(&[0.0; 4800], 0).is_empty());
        let mut tone = vec![0f32; 4800];
        fill(&mut tone, 200_000); // 200..300 ms: tone only
        assert!(detector.push(&tone, 0).is_empty());
    }
}
