//! Call statistics: the `--stats-json` contract (fields are only ever added, never renamed; scripts
//! and the e2e tests read them) and the small pieces of math behind it (percentiles, fixed-size
//! histograms, the W3C freeze rule, rates).

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

pub use super::ladder::Limitation;

#[derive(Debug, Clone, Default, Serialize)]
pub struct MsTo {
    pub signaling: Option<u64>,
    /// The call's first offer: made here, or received from the other peer.
    pub offer: Option<u64>,
    pub ice_connected: Option<u64>,
    pub first_video_frame: Option<u64>,
    pub first_audio: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IceStats {
    pub local_candidate_type: Option<String>,
    pub remote_candidate_type: Option<String>,
    /// The selected pair's ends, `ip:port` (a relay's address for a relayed end).
    pub local_address: Option<String>,
    pub remote_address: Option<String>,
    pub rtt_ms: Option<f64>,
    /// Times the connection dropped and came back.
    pub reconnections: u64,
    /// Time spent reconnecting, in total.
    pub reconnecting_ms: f64,
    /// ICE restarts this side started (the connection dropped and did not come back by itself,
    /// or the machine's addresses changed).
    pub restarts: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VideoSendStats {
    pub frames_captured: u64,
    pub frames_encoded: u64,
    pub keyframes: u64,
    pub keyframe_requests_received: u64,
    /// Encoded frames dropped because the network side fell behind.
    pub frames_dropped: u64,
    /// Frames not encoded because the network side was behind (the pacer's queue, or the writer).
    pub frames_skipped_congestion: u64,
    /// Frames the encoder's rate control skipped to hold its bitrate.
    pub frames_skipped_encoder: u64,
    /// Frames left out to send the ladder rung's frame rate (below the camera's).
    pub frames_thinned: u64,
    pub bitrate_kbps: f64,
    /// What the encoder aims for now: the congestion controller's share for video.
    pub target_kbps: f64,
    /// The frame rate of the ladder's rung in use (what is sent at most).
    pub max_fps: u32,
    /// Why less than the top rung is sent.
    pub quality_limitation: Limitation,
    /// The share of the last 2 s the encode thread spent on frames (scaling and encoding; 1.0:
    /// it did nothing else). Above 0.85 for 4 s the picture steps down (`thread_load`).
    pub encoder_load: f64,
    /// What the receiver's decoder asked for at most, in pixels a second (0: no limit); the
    /// ladder stays at the largest rung that fits (`quality_limitation` "receiver").
    pub receiver_max_pixel_rate: u64,
    pub encode_ms: Percentiles,
    /// The encoded frames' mean quantizers (0-51: lower is finer).
    pub qp: Percentiles,
    /// Whether the frames sent now are deblocked (off at fine quantizers: `DeblockingPolicy`).
    pub deblocking: bool,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VideoRecvStats {
    /// The H.264 decoder: "FFmpeg 5.1.9..." (the system's libavcodec) or "openh264".
    pub decoder: String,
    pub frames_received: u64,
    pub frames_decoded: u64,
    pub frames_dropped: u64,
    pub keyframe_requests_sent: u64,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub freezes: u64,
    pub total_freeze_ms: f64,
    pub latency_ms: Percentiles,
    /// Luma PSNR of stamped frames against their source (one stamped frame in four).
    pub psnr_db: Percentiles,
    pub decode_ms: Percentiles,
    /// The share of the last 2 s the decode thread spent on frames (1.0: it did nothing else).
    pub decoder_load: f64,
    /// What this side's decoder asks the sender for at most, in pixels a second (0: nothing), as
    /// it did not keep up (`thread_load::DecoderAsk`).
    pub asked_max_pixel_rate: u64,
    /// The person is not shown the video now (the window is minimized), so the least of it is
    /// asked for (`SessionCommand::SetVideoShown`).
    pub not_shown: bool,
    /// From a frame's first packet to its last (waits for reordered or retransmitted packets).
    pub assembly_ms: Percentiles,
    pub stamped_frames: u64,
    /// Frames missing between the first and last stamp index seen.
    pub frames_lost: u64,
    pub packets_late: u64,
    pub bitrate_kbps: f64,
    /// Complete frames dropped before decoding because the decoder fell behind (a keyframe is
    /// asked for). Not part of `frames_dropped`, which counts what the assembler gave up on.
    pub frames_dropped_decoder_behind: u64,
    /// Frames the decoder could not decode (a keyframe is asked for).
    pub frames_undecodable: u64,
    /// Added to video's playout delay so that a frame recovered by one resend is still shown on
    /// time: the round trip while gaps keep holding frames (a lossy link), else 0.
    pub resend_delay_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioSendStats {
    pub frames_encoded: u64,
    /// Echo return loss enhancement the echo canceller reports (dB), when it runs.
    pub aec_erle_db: Option<f64>,
    /// The echo path delay the echo canceller found.
    pub aec_delay_ms: Option<u32>,
    /// Encoded frames dropped because the network side fell behind.
    pub frames_dropped: u64,
    /// Audio per packet now: 10 ms while the link has room, 20 ms on a tight one.
    pub packet_ms: f64,
    /// Loudness of what is sent (after processing; the floor while muted), dBFS with a slow
    /// fall: above `SPEAKING_DBFS` you are speaking. None before the first packet.
    pub level_dbfs: Option<f64>,
    /// While muted: the loudness of what the microphone hears (after processing, measured as
    /// `level_dbfs`; none of it is sent), so that the window can tell someone who speaks while
    /// muted. None while not muted.
    pub muted_level_dbfs: Option<f64>,
    /// From a packet's first sample captured to the packet encoded (the packet's length plus
    /// processing and encoding): the send side's share of the latency.
    pub capture_to_encoded_ms: Percentiles,
    /// From a packet's first sample captured to the packet handed to the track (encoding plus
    /// the writer task's wake-up): `capture_to_encoded_ms` and the send task's share.
    pub capture_to_sent_ms: Percentiles,
    /// Test signal only: how late the markers' onsets come out of audio processing (echo
    /// cancellation, noise suppression, gain control) against the source: processing's share of
    /// mouth to ear, its softening of onsets included (0 to 2.5 ms without processing).
    pub processing_ms: Percentiles,
    /// Microphone samples (per channel, at the device rate) lost before they could be read.
    pub mic_samples_dropped: u64,
    /// How old the microphone's newest samples were when its device handed them over (its own
    /// and the operating system's buffering; the capture times allow for it). None without a
    /// device.
    pub mic_device_ms: Option<f64>,
    /// The loss Opus's in-band FEC protects against now (percent; follows the measured loss).
    pub fec_expected_loss_percent: u8,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioRecvStats {
    pub packets_received: u64,
    pub frames_decoded: u64,
    pub frames_recovered_fec: u64,
    pub frames_concealed: u64,
    /// Concealed frames inserted to grow the jitter buffer (not losses).
    pub frames_stretched: u64,
    pub concealed_ratio: f64,
    /// Mouth to ear of the test signal's markers (when the other side sends it).
    pub latency_ms: Percentiles,
    /// Audio the jitter buffer held ahead of playout, at each frame played: its share of the
    /// latency.
    pub held_ms: Percentiles,
    /// From each packet's first sample captured (the sender's clock, by its sender reports) to
    /// the packet reaching the jitter buffer: the sender's share, the network and the receive
    /// task. Needs sender reports.
    pub transit_ms: Percentiles,
    /// How long each packet played had waited in the jitter buffer: its target plus the phase
    /// of the playout clock against arrivals.
    pub waited_ms: Percentiles,
    /// Mouth to ear of every packet played (its capture time by the sender reports, less Opus's
    /// lookahead, to when the speaker plays it), for any sound: `latency_ms` measures only the
    /// test signal's markers. Needs sender reports and lip sync on.
    pub latency_estimated_ms: Percentiles,
    /// From a frame written to the speaker to the speaker playing it: what the speaker's queue
    /// and the device's own buffering hold (empty without a device). Part of both latencies
    /// above.
    pub speaker_delay_ms: Percentiles,
    pub jitter_buffer_ms: f64,
    /// Audio per packet the other side sends (10 or 20 ms; a browser sends 20).
    pub packet_ms: f64,
    /// Loudness of what is played, dBFS with a slow fall: above `SPEAKING_DBFS` the other person
    /// is speaking. None before the first frame.
    pub level_dbfs: Option<f64>,
    /// Packets that arrived after their time to play had passed (discarded).
    pub packets_late: u64,
    /// Packets discarded because too many waited (playout had stalled).
    pub packets_dropped_overflow: u64,
    /// Frames the jitter buffer skipped to bring its delay back to the target.
    pub frames_dropped_latency: u64,
    /// 20 ms chunks the speaker discarded because its buffer was full (0 when the device clock
    /// paces playout).
    pub frames_dropped_overflow: u64,
    /// Speaker samples (per channel, at the device rate) discarded because its buffer was full.
    pub speaker_samples_dropped: u64,
    /// Speaker samples (per channel, at the device rate) played as silence because it ran dry,
    /// once playout had begun.
    pub speaker_underrun_samples: u64,
    /// Packets the decoder could not decode (concealed instead).
    pub frames_undecodable: u64,
}

/// Lip sync at the receiver: how far apart audio and video of one capture instant reach the
/// person, and what was done about it. Positive skews: video later than audio.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStats {
    /// Measured from the test sources (video latency from the stamp minus audio latency from
    /// the marker, at each marker played): only when the other side sends both test signals.
    pub skew_ms: Percentiles,
    /// Estimated from the sender reports at each video frame, after the hold: on any call whose
    /// other side sends reports.
    pub estimated_skew_ms: Percentiles,
    /// How long each decoded frame was held for its audio.
    pub video_hold_ms: Percentiles,
    /// What audio playout adds to its jitter-buffer target now, to wait for video.
    pub audio_delay_ms: f64,
    /// Frames shown before their time because the hold queue was full.
    pub frames_shown_early: u64,
    /// RTCP sender reports received (0: no sync, played as it comes).
    pub sender_reports: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatStats {
    pub sent: u64,
    pub received: Vec<String>,
}

/// Which way a file went, from this side: `"sent"` or `"received"` in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Sent,
    Received,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileStats {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub direction: Direction,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything `--stats-json` writes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallStats {
    pub room: String,
    pub peer_name: Option<String>,
    /// Wall-clock time (Unix ms) of the start of `join`, the origin of `ms_to`: lines the
    /// `ms_to` of two processes up (e.g. the offer one made and the frame the other showed).
    pub joined_epoch_ms: u64,
    pub duration_s: f64,
    pub ms_to: MsTo,
    pub ice: IceStats,
    pub video_send: VideoSendStats,
    pub video_recv: VideoRecvStats,
    pub audio_send: AudioSendStats,
    pub audio_recv: AudioRecvStats,
    /// Lip sync (audio/video skew) at this receiver.
    pub sync: SyncStats,
    pub chat: ChatStats,
    pub files: Vec<FileStats>,
    pub security_code: Option<String>,
    /// The congestion controller: what the network allows us to send, and why.
    pub bwe: BweStats,
    /// Whether this process kept up: stalls of the async runtime that carries the network.
    pub runtime: RuntimeStats,
    /// One sample a second since the call connected (the last ten minutes at most), so a script
    /// can look at the end of a call rather than whole-call averages.
    pub timeline: Vec<Second>,
}

/// Stalls of the async runtime (`watchdog.rs`): times it ran no task for 500 ms or more.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuntimeStats {
    pub stalls: u64,
    pub longest_stall_ms: f64,
}

/// Send-side congestion control (transport-wide feedback from the other peer).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BweStats {
    /// What the whole send side may use.
    pub target_kbps: f64,
    pub delay_based_kbps: f64,
    pub loss_based_kbps: f64,
    /// `"delay"` or `"loss"`: the half that sets the target.
    pub limited_by: &'static str,
    /// Share of our packets the other side reported lost (smoothed).
    pub loss_fraction: f64,
    /// Round trip implied by the feedback; `None` until feedback arrived.
    pub feedback_rtt_ms: Option<f64>,
    /// Feedback reports received (0: the other side sends no transport-wide feedback).
    pub feedback_batches: u64,
    pub pacer_rate_kbps: f64,
    pub pacer_queue_ms: u32,
    /// Video packets the pacer dropped because its queue (bounded in time) was full.
    pub pacer_dropped: u64,
    /// Our packets the other side's feedback covered, and those it reported lost.
    pub packets_reported: u64,
    pub packets_lost: u64,
    /// Packets sent again on request (NACK).
    pub retransmissions: u64,
    /// Resends the pacer refused: they would have starved video after a burst loss.
    pub resends_refused: u64,
    /// Packets we asked the other side to send again (a packet asked for twice counts twice).
    pub nack_requests: u64,
}

/// One second of a call.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Second {
    /// Seconds since `join` started, at the end of this second.
    pub t_s: f64,
    pub send_kbps: f64,
    pub target_kbps: f64,
    pub send_width: u32,
    pub send_height: u32,
    /// Frames encoded in this second.
    pub send_fps: f64,
    pub keyframes_sent: u64,
    pub quality_limitation: Limitation,
    pub recv_kbps: f64,
    /// Frames decoded in this second.
    pub recv_fps: f64,
    pub recv_width: u32,
    pub recv_height: u32,
    /// Freezes so far (a stall still going on counts).
    pub freezes: u64,
    /// Share of the audio played in this second that was concealed.
    pub audio_concealed: f64,
    pub rtt_ms: Option<f64>,
    /// The audio/video skew measured at the last test-signal marker played in this second
    /// (video minus audio latency, ms), when the other side sends the test sources.
    pub av_skew_ms: Option<f64>,
    /// The mouth-to-ear latency of the last test-signal marker played in this second (ms).
    pub audio_latency_ms: Option<f64>,
}

/// Summarizes samples (any order).
pub fn percentiles(samples: &[f64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        count: sorted.len(),
    }
}

/// Smallest value with its own bucket; everything below (zero included) shares bucket 0.
const HISTOGRAM_LOW: f64 = 0.01;
/// Each bucket spans a factor of this: a bucket's middle is within 0.5% of any value in it.
const HISTOGRAM_RATIO: f64 = 1.01;
/// Log-spaced buckets from 0.01 up to about 100 000 (ms or dB), then one for everything above.
const HISTOGRAM_BUCKETS: usize = 1_622;

/// A fixed-size histogram with log-spaced buckets: recording is O(1) and summarizing is
/// O(buckets), neither allocates nor sorts, so it can sit behind a lock an audio thread takes.
/// `min`, `max`, `mean` and `count` are exact; percentiles are the middle of the bucket they fall
/// in (clamped to `min..=max`), within 0.5% of the exact value, or 0.01 absolute below 0.01.
/// Covers 0.01..100 000 (milliseconds of latency, dB of PSNR); above that, percentiles read `max`.
/// Non-finite values are ignored.
#[derive(Clone)]
pub struct Histogram {
    counts: [u32; HISTOGRAM_BUCKETS],
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; HISTOGRAM_BUCKETS],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("summary", &self.summary())
            .finish()
    }
}

impl Histogram {
    fn bucket(value: f64) -> usize {
        if value < HISTOGRAM_LOW {
            return 0;
        }
        let i = 1 + ((value / HISTOGRAM_LOW).ln() / HISTOGRAM_RATIO.ln()) as usize;
        i.min(HISTOGRAM_BUCKETS - 1)
    }

    /// The value a bucket stands for: its geometric middle (bucket 0: 0; the last: `max`).
    fn middle(&self, bucket: usize) -> f64 {
        let value = match bucket {
            0 => 0.0,
            b if b == HISTOGRAM_BUCKETS - 1 => self.max,
            b => HISTOGRAM_LOW * HISTOGRAM_RATIO.powf(b as f64 - 0.5),
        };
        value.clamp(self.min, self.max)
    }

    pub fn record(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let bucket = &mut self.counts[Self::bucket(value)];
        *bucket = bucket.saturating_add(1);
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at rank round((count - 1) x `p`), as `percentiles` picks it from sorted samples.
    fn at(&self, p: f64) -> f64 {
        let rank = ((self.count - 1) as f64 * p).round() as u64;
        let mut seen = 0u64;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += u64::from(n);
            if seen > rank {
                return self.middle(bucket);
            }
        }
        self.max
    }

    /// The summary `--stats-json` shows.
    pub fn summary(&self) -> Percentiles {
        if self.count == 0 {
            return Percentiles::default();
        }
        Percentiles {
            p50: self.at(0.50),
            p95: self.at(0.95),
            p99: self.at(0.99),
            mean: self.sum / self.count as f64,
            min: self.min,
            max: self.max,
            count: usize::try_from(self.count).unwrap_or(usize::MAX),
        }
    }
}

/// Counts freezes by the W3C rule (webrtc-stats `freezeCount`): an interval between rendered
/// frames of at least max(3 x mean, mean + 150 ms), the mean taken over the last 30 intervals.
#[derive(Debug, Default)]
pub struct FreezeDetector {
    last: Option<Duration>,
    intervals: VecDeque<f64>,
    pub freezes: u64,
    pub total_freeze_ms: f64,
}

impl FreezeDetector {
    /// The freeze under way at `now` (no frame for longer than the freeze threshold), in ms: a
    /// stall that never ends is a freeze too.
    pub fn ongoing(&self, now: Duration) -> Option<f64> {
        let last = self.last?;
        if self.intervals.is_empty() {
            return None;
        }
        let mean = self.intervals.iter().sum::<f64>() / self.intervals.len() as f64;
        let gap_ms = now.saturating_sub(last).as_secs_f64() * 1000.0;
        (gap_ms >= (3.0 * mean).max(mean + 150.0)).then_some(gap_ms)
    }

    /// `at`: when a frame was rendered (any monotonic origin).
    pub fn frame(&mut self, at: Duration) {
        if let Some(last) = self.last.replace(at) {
            let interval_ms = at.saturating_sub(last).as_secs_f64() * 1000.0;
            if !self.intervals.is_empty() {
                let mean = self.intervals.iter().sum::<f64>() / self.intervals.len() as f64;
                if interval_ms >= (3.0 * mean).max(mean + 150.0) {
                    self.freezes += 1;
                    self.total_freeze_ms += interval_ms;
                }
            }
            self.intervals.push_back(interval_ms);
            if self.intervals.len() > 30 {
                self.intervals.pop_front();
            }
        }
    }
}

/// Bits per second over a sliding window of (time, bytes) samples.
#[derive(Debug, Default)]
pub struct RateMeter {
    samples: VecDeque<(Duration, u64)>,
}

impl RateMeter {
    const WINDOW: Duration = Duration::from_secs(2);

    pub fn add(&mut self, at: Duration, bytes: u64) {
        self.samples.push_back((at, bytes));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.saturating_sub(*t) > Self::WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// The rate over the window ending at `now`: 0 once nothing was added for a whole window (a
    /// sender that stopped encoding), where `kbps` keeps the rate of the last samples.
    pub fn kbps_at(&self, now: Duration) -> f64 {
        let mut recent = self
            .samples
            .iter()
            .filter(|(t, _)| now.saturating_sub(*t) <= Self::WINDOW);
        let Some((first, _)) = recent.next() else {
            return 0.0;
        };
        let span = now.saturating_sub(*first).as_secs_f64();
        if span <= 0.0 {
            return 0.0;
        }
        let bytes: u64 = recent.map(|(_, b)| b).sum();
        bytes as f64 * 8.0 / span / 1000.0
    }

    pub fn kbps(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((first, _)), Some((last, _))) if last > first => {
                let bytes: u64 = self.samples.iter().skip(1).map(|(_, b)| b).sum();
                bytes as f64 * 8.0 / (*last - *first).as_secs_f64() / 1000.0
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_falls_to_zero_when_nothing_comes() {
        let mut meter = RateMeter::default();
        for n in 0..=10u64 {
            meter.add(Duration::from_millis(100 * n), 1250); // 100 kbit/s
        }
        let second = Duration::from_secs(1);
        assert!(
            (meter.kbps_at(second) - 100.0).abs() < 1.0,
            "{}",
            meter.kbps_at(second)
        );
        // Nothing more for 3 s: the last-samples rate stays, the windowed one is 0.
        assert!((meter.kbps() - 100.0).abs() < 1.0);
        assert_eq!(meter.kbps_at(Duration::from_secs(4)), 0.0);
        // Half a window later, half the rate.
        let later = meter.kbps_at(Duration::from_secs(2));
        assert!((40.0..60.0).contains(&later), "{later}");
    }

    #[test]
    fn percentile_math() {
        let p = percentiles(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(
            (p.p50, p.min, p.max, p.mean, p.count),
            (3.0, 1.0, 5.0, 3.0, 5)
        );
        let many: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(&many).p95, 95.0);
        assert_eq!(percentiles(&[]), Percentiles::default());
    }

    /// `summary` against the exact `percentiles` of the same samples: min, max, mean and count
    /// agree exactly, p50/p95/p99 within one bucket (1%, or 0.01 below 0.01).
    fn check_histogram(samples: &[f64]) {
        let mut h = Histogram::default();
        for &v in samples {
            h.record(v);
        }
        let (got, want) = (h.summary(), percentiles(samples));
        assert_eq!(
            (got.min, got.max, got.count),
            (want.min, want.max, want.count)
        );
        assert!((got.mean - want.mean).abs() <= 1e-9 * want.mean.abs().max(1.0));
        for (name, g, w) in [
            ("p50", got.p50, want.p50),
            ("p95", got.p95, want.p95),
            ("p99", got.p99, want.p99),
        ] {
            let tolerance = (w.abs() * (HISTOGRAM_RATIO - 1.0)).max(HISTOGRAM_LOW);
            assert!(
                (g - w).abs() <= tolerance,
                "{name}: {g} vs exact {w} ({} samples)",
                samples.len()
            );
        }
    }

    #[test]
    fn histogram_percentiles_within_one_bucket() {
        // Uniform 1..=1000 ms.
        check_histogram(&(1..=1000).map(f64::from).collect::<Vec<_>>());
        // Fine steps across the whole range, small values and zero included.
        check_histogram(
            &(0..20_000)
                .map(|i| f64::from(i) * 0.005)
                .collect::<Vec<_>>(),
        );
        // Exponential (a long tail, like latency), from a fixed pseudo-random sequence.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let exponential: Vec<f64> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                -40.0 * (1.0 - u).ln()
            })
            .collect();
        check_histogram(&exponential);
        // PSNR-like values in dB, with the cap.
        check_histogram(&[31.5, 32.0, 32.25, 33.0, 100.0, 29.75, 30.5]);
        // One value: every percentile is exactly it.
        check_histogram(&[7.3; 10]);
    }

    #[test]
    fn histogram_edges() {
        let mut h = Histogram::default();
        assert_eq!(h.summary(), Percentiles::default());
        // Out of range above: percentiles read the exact maximum.
        h.record(5.0);
        h.record(5.0);
        h.record(1e9);
        h.record(f64::NAN);
        h.record(f64::INFINITY);
        let s = h.summary();
        assert_eq!((s.count, s.min, s.max, s.p99), (3, 5.0, 1e9, 1e9));
        assert!((s.p50 - 5.0).abs() <= 0.05, "{s:?}");
        // Below the smallest bucket: read as the exact minimum.
        let mut low = Histogram::default();
        low.record(0.0);
        low.record(0.004);
        assert_eq!(low.summary().p50, 0.0);
        assert_eq!(low.summary().max, 0.004);
    }

    #[test]
    fn a_stall_that_never_ends_is_a_freeze() {
        let mut d = FreezeDetector::default();
        let ms = Duration::from_millis;
        assert_eq!(d.ongoing(ms(5000)), None, "no video yet: no freeze");
        for i in 0..40 {
            d.frame(ms(i * 33));
        }
        let last = 39 * 33;
        assert_eq!(d.ongoing(ms(last + 100)), None, "within the threshold");
        assert_eq!(d.ongoing(ms(last + 10_000)), Some(10_000.0));
        assert_eq!(d.freezes, 0, "only counted once it is reported");
    }

    #[test]
    fn freezes_by_the_w3c_rule() {
        let mut d = FreezeDetector::default();
        let ms = Duration::from_millis;
        let mut t = 0;
        for _ in 0..40 {
            d.frame(ms(t));
            t += 33;
        }
        assert_eq!(d.freezes, 0);
        // 33 ms frames: the threshold is max(99, 183) = 183 ms. 180 ms is not a freeze...
        t += 180 - 33;
        d.frame(ms(t));
        assert_eq!(d.freezes, 0);
        for _ in 0..40 {
            t += 33;
            d.frame(ms(t));
        }
        // ...but 200 ms is.
        t += 200;
        d.frame(ms(t));
        assert_eq!(d.freezes, 1);
        assert!((d.total_freeze_ms - 200.0).abs() < 1e-9);
        // At 5 fps (200 ms frames) the threshold is 3 x 200 = 600 ms.
        let mut slow = FreezeDetector::default();
        for i in 0..40 {
            slow.frame(ms(i * 200));
        }
        slow.frame(ms(39 * 200 + 550));
        assert_eq!(slow.freezes, 0);
        slow.frame(ms(39 * 200 + 550 + 650));
        assert_eq!(slow.freezes, 1);
    }

    #[test]
    fn rate_meter() {
        let mut m = RateMeter::default();
        for i in 0..=10 {
            m.add(Duration::from_millis(i * 100), 1250); // 10 kB/s = 100 kbps
        }
        assert!((m.kbps() - 100.0).abs() < 1e-6, "{}", m.kbps());
    }
}
