//! The synthetic test sound: a pure function of wall-clock time. A steady tone, and five times a
//! second (every 200 ms) a 60 ms burst, each of the five at a frequency of its own. A receiver
//! that finds the onset of a burst in what it plays knows the mouth-to-ear latency: the burst's
//! frequency says which slot of the second it started in, so latencies up to a second read
//! unambiguously, five times a second.
//!
//! It has two voices, so that two peers on test signals sound like two people rather than one
//! person twice: the second voice's bursts fall halfway between the first's, at frequencies and
//! over a tone of their own. With one voice on both sides, each peer's echo canceller would hear
//! at its far end its own signal a few ms late, take the bursts for echo and eat their onsets.

use std::f64::consts::TAU;

use super::SAMPLE_RATE_HZ;

/// What a source of this signal calls itself (`AudioSource::name`): the sender measures the
/// markers only in it.
pub const SOURCE_NAME: &str = "test signal";

const MARKERS_PER_PERIOD: usize = 5;
const MARKER_US: u64 = 60_000;
/// How long after an onset another onset is not read: the burst's length, and 20 ms for a codec
/// that smears its onset (read late) and its end (heard after it). Less than the 100 ms to the
/// other voice's next burst.
const ONE_BURST_US: u64 = MARKER_US + 20_000;
/// How often the pattern repeats: the longest latency that reads unambiguously.
const PERIOD_US: u64 = 1_000_000;
const SLOT_US: u64 = PERIOD_US / MARKERS_PER_PERIOD as u64;

/// One of the signal's two voices (`--mic test` and `--mic test:2`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Voice {
    #[default]
    First,
    Second,
}

struct Shape {
    /// The bursts' frequencies by slot: whole multiples of 400 Hz, so each fills a detection
    /// window (2.5 ms) with a whole number of cycles and the others read (nearly) nothing there.
    marker_hz: [f64; MARKERS_PER_PERIOD],
    tone_hz: f64,
    /// Where the first burst starts in each second.
    offset_us: u64,
}

const SHAPES: [Shape; 2] = [
    Shape {
        marker_hz: [2400.0, 1600.0, 2000.0, 2800.0, 1200.0],
        tone_hz: 440.0,
        offset_us: 0,
    },
    Shape {
        marker_hz: [4000.0, 3200.0, 4400.0, 3600.0, 4800.0],
        tone_hz: 330.0,
        offset_us: SLOT_US / 2,
    },
];

impl Voice {
    fn shape(self) -> &'static Shape {
        &SHAPES[self as usize]
    }

    /// The voice at wall-clock time `t_us`.
    pub fn sample_at(self, t_us: u64) -> f32 {
        let shape = self.shape();
        // Every frequency is a whole number of hertz, so each one's phase repeats every second:
        // the time within the second gives the same samples as the wall clock, without `sin`
        // reducing an argument of ~10^13 radians (libm's slow path, 1.4% of a peer's CPU).
        let t = (t_us % 1_000_000) as f64 / 1e6;
        let in_period = (t_us + PERIOD_US - shape.offset_us) % PERIOD_US;
        if in_period % SLOT_US < MARKER_US {
            let hz = shape.marker_hz[(in_period / SLOT_US) as usize];
            (0.5 * (TAU * hz * t).sin()) as f32
        } else {
            (0.2 * (TAU * shape.tone_hz * t).sin()) as f32
        }
    }

    /// Fills `out` with the voice for samples starting at `start_us`.
    pub fn fill(self, out: &mut [f32], start_us: u64) {
        for (i, s) in out.iter_mut().enumerate() {
            *s = self.sample_at(start_us + i as u64 * 1_000_000 / u64::from(SAMPLE_RATE_HZ));
        }
    }
}

/// How much more power a window's strongest marker frequency needs than the tone and than any
/// other marker frequency, to be read as that marker (6 dB).
const DOMINANCE: f64 = 4.0;

/// Samples per detection window (2.5 ms).
const WINDOW: usize = SAMPLE_RATE_HZ as usize / 400;
const WINDOW_US: u64 = 2_500;

fn goertzel_power(samples: &[f32], hz: f64) -> f64 {
    crate::audio::goertzel_power(samples, hz, SAMPLE_RATE_HZ)
}

/// How many consecutive windows must read the same marker for its first window to be an onset
/// (5 ms): a codec smears an onset, and one window of the smear can read as a neighbouring
/// frequency, a latency off by whole slots.
const CONFIRM_WINDOWS: u32 = 2;

/// Consecutive windows that read the same marker.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Which voice (`SHAPES` index) and slot.
    marker: (usize, usize),
    /// When its first window started.
    start_us: u64,
    /// The windows that read it clearly.
    windows: u32,
    /// The last window was unclear but loudest at this marker (see `Reading::Unclear`).
    unclear: bool,
    /// Whether its first window can be a burst's onset: not the continuation of a burst.
    onset: bool,
}

/// What one window says.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    /// Clearly one marker: `DOMINANCE` over the tone and over every other marker frequency.
    Marker((usize, usize)),
    /// Loudest at this marker's frequency, over the tone, but another marker's comes near:
    /// Opus codes a burst's onset in short blocks, whose coarse frequency resolution can put a
    /// window of it between two neighbouring markers. No reading; a run of this marker goes on
    /// through one such window (`a_burst_whose_onset_opus_smeared_is_read_from_its_onset`).
    Unclear((usize, usize)),
    Nothing,
}

/// What a loud window (one of `WINDOW` samples) says: which marker, if any, and how clearly.
fn read(window: &[f32]) -> Reading {
    let tone = SHAPES
        .iter()
        .map(|shape| goertzel_power(window, shape.tone_hz))
        .fold(0.0, f64::max);
    let (mut best, mut best_power, mut runner_up) = (None, 0.0, 0.0);
    for (voice, shape) in SHAPES.iter().enumerate() {
        for slot in 0..MARKERS_PER_PERIOD {
            let power = goertzel_power(window, shape.marker_hz[slot]);
            if power > best_power {
                runner_up = best_power;
                (best, best_power) = (Some((voice, slot)), power);
            } else {
                runner_up = f64::max(runner_up, power);
            }
        }
    }
    match best {
        Some(marker) if best_power > DOMINANCE * tone.max(runner_up) => Reading::Marker(marker),
        Some(marker) if best_power > DOMINANCE * tone => Reading::Unclear(marker),
        _ => Reading::Nothing,
    }
}

/// Finds burst onsets in received audio and turns them into latencies.
#[derive(Debug)]
pub struct MarkerDetector {
    pending: Vec<f32>,
    /// Wall-clock time of `pending[0]`.
    pending_start_us: u64,
    /// The run of consecutive windows that read the same marker, which the last window ended.
    run: Option<Run>,
    /// Not yet out of the burst the audio started in, which has no onset to read.
    mid_burst: bool,
    /// When the last onset was found: a burst has one onset, so a burst that fades and comes
    /// back within its length (suppressed in the middle, or read next to the tone) is not read
    /// twice.
    last_onset_us: Option<u64>,
}

impl Default for MarkerDetector {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            pending_start_us: 0,
            run: None,
            mid_burst: true,
            last_onset_us: None,
        }
    }
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
            let energy: f64 =
                window.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / WINDOW as f64;
            // Loud enough (above -30 dBFS; a quiet window costs no filters: this runs on every
            // call's playout) and clearly one marker's frequency, of either voice: the frequency
            // says whose and which slot. A window where two marker frequencies come near each
            // other is no reading: a codec smears an onset over neighbouring frequencies, and
            // reading the wrong one is a latency off by whole slots.
            let reading = if energy > 1e-3 {
                read(window)
            } else {
                Reading::Nothing
            };
            let at =
                self.pending_start_us + consumed as u64 * 1_000_000 / u64::from(SAMPLE_RATE_HZ);
            self.run = match (reading, self.run) {
                (Reading::Marker(marker), Some(run)) if run.marker == marker => Some(Run {
                    windows: run.windows.saturating_add(1),
                    unclear: false,
                    ..run
                }),
                // One unclear window of the run's own marker: the run waits for the next.
                (Reading::Unclear(marker), Some(run)) if run.marker == marker && !run.unclear => {
                    Some(Run {
                        unclear: true,
                        ..run
                    })
                }
                // A new run starts a burst unless it follows a confirmed one (a burst that came
                // through as two frequencies) or the audio started in a burst.
                (Reading::Marker(marker), previous) => Some(Run {
                    marker,
                    start_us: at,
                    windows: 1,
                    unclear: false,
                    onset: !self.mid_burst
                        && previous.is_none_or(|run| run.windows < CONFIRM_WINDOWS),
                }),
                (Reading::Unclear(_) | Reading::Nothing, _) => {
                    self.mid_burst = false;
                    None
                }
            };
            if let Some(run) = self
                .run
                .filter(|run| run.onset && run.windows == CONFIRM_WINDOWS)
            {
                let in_last_burst = self
                    .last_onset_us
                    .is_some_and(|onset| run.start_us.saturating_sub(onset) < ONE_BURST_US);
                if !in_last_burst {
                    self.last_onset_us = Some(run.start_us);
                    // The onset of slot `slot`'s burst, which left the source at the voice's
                    // offset + slot x 200 ms. The window it is found in may start up to a window
                    // before it: read as 0, not as almost a second.
                    let (voice, slot) = run.marker;
                    let sent = SHAPES[voice].offset_us + slot as u64 * SLOT_US;
                    let late_us = (run.start_us + PERIOD_US + WINDOW_US - sent) % PERIOD_US;
                    found.push(late_us.saturating_sub(WINDOW_US));
                }
            }
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

    /// Plays `voice` delayed by `delay_us` in blocks of `block` samples for `secs` seconds, from
    /// a start `phase_us` into a second; returns the latencies read.
    fn latencies(voice: Voice, delay_us: u64, block: usize, secs: u64, phase_us: u64) -> Vec<u64> {
        let mut detector = MarkerDetector::default();
        let mut found = Vec::new();
        let start = 1_700_000_000_000_000u64 + phase_us;
        let block_us = block as u64 * 1_000_000 / u64::from(SAMPLE_RATE_HZ);
        let mut samples = vec![0f32; block];
        for n in 0..secs * 1_000_000 / block_us {
            let play_us = start + n * block_us;
            voice.fill(&mut samples, play_us - delay_us);
            found.extend(detector.push(&samples, play_us));
        }
        found
    }

    /// Every latency in `found` reads `delay_us`, within a detection window.
    fn all_read_as(found: &[u64], delay_us: u64, what: &str) {
        assert!(
            found.iter().all(|l| l.abs_diff(delay_us) <= WINDOW_US),
            "{what}: {found:?}"
        );
    }

    /// `sample_at` takes the time within the second for the wall clock: the same samples only
    /// while every frequency makes whole cycles in a second.
    #[test]
    fn the_time_within_the_second_gives_the_wall_clocks_samples() {
        for shape in &SHAPES {
            for hz in shape.marker_hz.iter().chain([&shape.tone_hz]) {
                assert_eq!(hz.fract(), 0.0, "{hz} Hz");
            }
        }
        let wall_clock = |voice: Voice, t_us: u64| {
            let shape = voice.shape();
            let in_period = (t_us + PERIOD_US - shape.offset_us) % PERIOD_US;
            let (amplitude, hz) = if in_period % SLOT_US < MARKER_US {
                (0.5, shape.marker_hz[(in_period / SLOT_US) as usize])
            } else {
                (0.2, shape.tone_hz)
            };
            amplitude * (TAU * hz * (t_us as f64 / 1e6)).sin()
        };
        // 2026-12-05: ~10^13 rad, where f64 itself holds the phase to ~0.01 rad.
        let now_us = 1_796_435_793_123_456;
        for voice in [Voice::First, Voice::Second] {
            for k in 0..20_000 {
                let t_us = now_us + k * 97;
                let diff = (f64::from(voice.sample_at(t_us)) - wall_clock(voice, t_us)).abs();
                assert!(diff < 0.01, "{voice:?} at {t_us}: off by {diff}");
            }
        }
    }

    /// Opus at 32 kbit/s once coded the first 15 ms of a 4000 Hz burst with 4400 Hz (another
    /// slot's marker) nearly as loud in two of its windows: read 15 ms late until a run went on
    /// through one such window (the Opus test at every phase, `confab_codecs::opus`).
    #[test]
    fn a_burst_whose_onset_opus_smeared_is_read_from_its_onset() {
        let voice = Voice::Second;
        // From a whole second, so a window starts where each burst does.
        let start = 1_700_000_000_000_000u64;
        let first_onset = start + voice.shape().offset_us;
        let neighbour_hz = voice.shape().marker_hz[2];
        let mut detector = MarkerDetector::default();
        let mut found = Vec::new();
        let mut samples = vec![0f32; WINDOW];
        for n in 0..400_000 / WINDOW_US {
            let t = start + n * WINDOW_US;
            voice.fill(&mut samples, t);
            // The first burst's second window: the neighbour at 3/4 of the marker's amplitude.
            if t == first_onset + WINDOW_US {
                for (i, s) in samples.iter_mut().enumerate() {
                    let t = i as f64 / f64::from(SAMPLE_RATE_HZ);
                    *s += (0.375 * (TAU * neighbour_hz * t).sin()) as f32;
                }
            }
            found.extend(detector.push(&samples, t));
        }
        assert_eq!(found, vec![0, 0], "both bursts at their onset");
    }

    #[test]
    fn detects_delayed_markers_five_times_a_second_in_either_voice() {
        // 4 s from a quarter into a second: 20 onsets, each read within a window. With 23 ms
        // the first voice starts inside a burst (227 ms, slot 1), which has no onset to read;
        // the second voice's bursts start at 100, 300, ... ms.
        for voice in [Voice::First, Voice::Second] {
            for (delay_us, block) in [
                (137_000, 960),
                (23_000, 480),
                (480_000, 480),
                (910_000, 960),
            ] {
                let found = latencies(voice, delay_us, block, 4, 250_000);
                assert_eq!(found.len(), 20, "{voice:?} {delay_us}: {found:?}");
                all_read_as(&found, delay_us, &format!("{voice:?} {delay_us}"));
            }
        }
    }

    #[test]
    fn an_onset_anywhere_in_a_window_reads_its_own_slot() {
        // The detector's windows fall where the playout blocks put them, the same for a whole
        // call: an onset at any point of a window must read its own slot, or the call reads the
        // wrong latency at every such burst.
        for voice in [Voice::First, Voice::Second] {
            for phase_us in (0..WINDOW_US).step_by(50) {
                let found = latencies(voice, 10_000, 480, 2, phase_us);
                assert!(found.len() >= 9, "{voice:?} at {phase_us} µs: {found:?}");
                all_read_as(&found, 10_000, &format!("{voice:?} at {phase_us} µs"));
            }
        }
    }

    #[test]
    fn the_voices_differ_in_time_and_frequency() {
        // Where one voice bursts, the other plays its tone: never both at once.
        let mut first = vec![0f32; 48_000];
        let mut second = vec![0f32; 48_000];
        // From 70 ms: between bursts of both voices.
        Voice::First.fill(&mut first, 70_000);
        Voice::Second.fill(&mut second, 70_000);
        let loud = |s: &[f32]| s.iter().map(|x| x.abs()).fold(0.0f32, f32::max) > 0.3;
        for (a, b) in first.chunks(120).zip(second.chunks(120)) {
            assert!(!(loud(a) && loud(b)), "both voices burst at once");
        }
        // Fed the sum, the detector reads both voices' markers at their own latencies.
        let mut detector = MarkerDetector::default();
        let mixed: Vec<f32> = first.iter().zip(&second).map(|(a, b)| a + b).collect();
        let found = detector.push(&mixed, 100_000); // played 30 ms after it was made
        assert_eq!(found.len(), 10, "{found:?}");
        all_read_as(&found, 30_000, "mixed");
    }

    #[test]
    fn an_onset_read_early_is_no_latency_not_a_second() {
        // No delay, 1.2 ms into a window: the onset's window starts before it.
        let found = latencies(Voice::First, 0, 480, 2, 1_200);
        assert!(found.len() >= 8, "{found:?}");
        all_read_as(&found, 0, "no delay");
    }

    #[test]
    fn latencies_beyond_one_slot_are_not_folded() {
        // 250 ms is more than a slot (200 ms): read as 250, never 50.
        for voice in [Voice::First, Voice::Second] {
            let found = latencies(voice, 250_000, 480, 2, 0);
            assert!(found.len() >= 8, "{found:?}");
            all_read_as(&found, 250_000, &format!("{voice:?}"));
        }
    }

    #[test]
    fn silence_and_plain_tone_have_no_markers() {
        let mut detector = MarkerDetector::default();
        assert!(detector.push(&[0.0; 4800], 0).is_empty());
        // 130 ms between two bursts of each voice (60..190 ms, 160..290 ms).
        for (voice, from_us) in [(Voice::First, 60_000), (Voice::Second, 160_000)] {
            let mut tone = vec![0f32; 6240];
            voice.fill(&mut tone, from_us);
            assert!(detector.push(&tone, 0).is_empty(), "{voice:?}");
        }
    }
}
