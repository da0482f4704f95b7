//! Call statistics: the `--stats-json` contract (DESIGN.md §3) and the small pieces of math behind
//! it (percentiles, the W3C freeze rule, rates).

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

pub use super::ladder::Limitation;

#[derive(Debug, Clone, Default, Serialize)]
pub struct MsTo {
    pub signaling: Option<u64>,
    pub ice_connected: Option<u64>,
    pub first_video_frame: Option<u64>,
    pub first_audio: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IceStats {
    pub local_candidate_type: Option<String>,
    pub remote_candidate_type: Option<String>,
    pub rtt_ms: Option<f64>,
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
    pub bitrate_kbps: f64,
    /// What the encoder aims for now: the congestion controller's share for video.
    pub target_kbps: f64,
    /// The frame rate of the ladder's rung in use (what is sent at most).
    pub max_fps: u32,
    /// Why less than the top rung is sent.
    pub quality_limitation: Limitation,
    pub encode_ms: Percentiles,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VideoRecvStats {
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
    pub psnr_db: Percentiles,
    pub decode_ms: Percentiles,
    /// From a frame's first packet to its last (waits for reordered or retransmitted packets).
    pub assembly_ms: Percentiles,
    pub stamped_frames: u64,
    /// Frames missing between the first and last stamp index seen.
    pub frames_lost: u64,
    pub packets_late: u64,
    pub bitrate_kbps: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioSendStats {
    pub frames_encoded: u64,
    /// Echo return loss enhancement the echo canceller reports (dB), when it runs.
    pub aec_erle_db: Option<f64>,
    /// The echo path delay the echo canceller found.
    pub aec_delay_ms: Option<u32>,
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
    pub latency_ms: Percentiles,
    pub jitter_buffer_ms: f64,
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
    pub duration_s: f64,
    pub ms_to: MsTo,
    pub ice: IceStats,
    pub video_send: VideoSendStats,
    pub video_recv: VideoRecvStats,
    pub audio_send: AudioSendStats,
    pub audio_recv: AudioRecvStats,
    pub chat: ChatStats,
    pub files: Vec<FileStats>,
    pub security_code: Option<String>,
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
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        count: sorted.len(),
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
