//! Lip sync. The sender keeps each stream's RTP clock on the capture clock and makes its RTCP
//! sender reports (SR) say so (`SyncReports` rewrites webrtc-rs's, which map RTP time to when a
//! packet passed the interceptor, not when it was captured); the receiver reads the other side's
//! SRs, turns the RTP timestamp of what it plays into a capture time, and `LipSync` decides who
//! waits: video (a short presentation hold) or audio (a larger jitter-buffer target).
//!
//! Pure logic apart from the interceptor: time is a parameter.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Chain position: below the SR generator (11_000), so the reports it makes pass here on their way
/// out, and above the pacer; on the way in it only reads.
pub const SLOT: usize = 10_500;

/// RTP clock rates: H.264 and Opus.
pub const VIDEO_CLOCK_HZ: u32 = 90_000;
pub const AUDIO_CLOCK_HZ: u32 = 48_000;

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp as µs since the Unix epoch; `None` before 1970 (garbage).
pub fn ntp_to_unix_us(ntp: u64) -> Option<u64> {
    let seconds = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET_S)?;
    let fraction_us = ((ntp & 0xFFFF_FFFF) * 1_000_000) >> 32;
    Some(seconds * 1_000_000 + fraction_us)
}

/// Where a sent stream's RTP clock stands against the capture clock: the sample `ticks` after
/// the first RTP timestamp the stream sent was captured at `capture_us` (Unix µs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    pub ticks: i64,
    pub capture_us: f64,
}

/// What one received stream's latest SR said: RTP time `rtp` is sender wall-clock `unix_us`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Report {
    unix_us: u64,
    rtp: u32,
}

/// Shared between the send pipelines (anchors), the interceptor chain (SRs both ways) and the
/// receive pipelines (capture times of what they play). Locks are held for a map lookup only.
#[derive(Debug, Default)]
pub struct SyncShared {
    anchors: Mutex<HashMap<u32, Anchor>>,
    reports: Mutex<HashMap<u32, Report>>,
    /// Sender reports received from the other side (all streams).
    pub reports_received: AtomicU64,
}

impl SyncShared {
    /// The send pipeline of `ssrc` says where its RTP clock stands.
    pub fn set_anchor(&self, ssrc: u32, anchor: Anchor) {
        lock(&self.anchors).insert(ssrc, anchor);
    }

    fn anchor(&self, ssrc: u32) -> Option<Anchor> {
        lock(&self.anchors).get(&ssrc).copied()
    }

    /// An SR from the other side.
    pub fn report_received(&self, report: &SenderReport) {
        let Some(unix_us) = ntp_to_unix_us(report.ntp_time) else {
            return;
        };
        lock(&self.reports).insert(
            report.ssrc,
            Report {
                unix_us,
                rtp: report.rtp_time,
            },
        );
        self.reports_received.fetch_add(1, Ordering::Relaxed);
    }

    /// When (the sender's Unix µs) the sample at `rtp` of the received stream `ssrc` was captured,
    /// by its latest SR; `None` before one came.
    pub fn capture_us(&self, ssrc: u32, rtp: u32, clock_rate: u32) -> Option<f64> {
        let report = *lock(&self.reports).get(&ssrc)?;
        let ticks = f64::from(rtp.wrapping_sub(report.rtp) as i32);
        Some(report.unix_us as f64 + ticks * 1e6 / f64::from(clock_rate))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps: a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The RTP clock of one sent stream, kept on the capture clock: for each sample, how many ticks
/// the packetizer should advance after it (webrtc-rs stamps a sample with the sum of the
/// durations before it), and the anchor to publish.
#[derive(Debug)]
pub struct RtpClock {
    clock_rate: u64,
    /// Capture µs of the first sample.
    origin_us: Option<u64>,
    /// Ticks since the first sample's timestamp of the next sample.
    next_ticks: u64,
}

impl RtpClock {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: u64::from(clock_rate),
            origin_us: None,
            next_ticks: 0,
        }
    }

    /// A sample captured at `capture_us` goes out now; the next one is expected `nominal` later.
    /// Returns the duration to give it (so that the next sample's timestamp lands on the capture
    /// clock), its own timestamp (ticks since the first sample's) and the anchor of the capture
    /// clock (in the same ticks). A sample after a gap carries the
    /// timestamp the one before it predicted (webrtc-rs cannot skip ahead without counting a
    /// loss); the clock catches up with the next one.
    pub fn sample(&mut self, capture_us: u64, nominal: Duration) -> (Duration, u64, Anchor) {
        let origin = *self.origin_us.get_or_insert(capture_us);
        let ticks = self.next_ticks;
        let on_clock = capture_us.saturating_sub(origin) * self.clock_rate / 1_000_000;
        let next = on_clock + nominal.as_micros() as u64 * self.clock_rate / 1_000_000;
        let advance = next.saturating_sub(ticks).max(1);
        self.next_ticks = ticks + advance;
        // Half a tick more than `advance`, so that webrtc-rs's truncation lands on it exactly.
        let duration = Duration::from_secs_f64((advance as f64 + 0.5) / self.clock_rate as f64);
        let anchor = Anchor {
            ticks: on_clock as i64,
            capture_us: origin as f64 + on_clock as f64 * 1e6 / self.clock_rate as f64,
        };
        (duration, ticks, anchor)
    }
}

/// The interceptor: remembers each sent stream's first RTP timestamp, rewrites the RTP time of
/// outgoing SRs to the capture clock (from the send pipelines' anchors), and hands incoming SRs
/// to `SyncShared`.
pub struct SyncReports {
    shared: std::sync::Arc<super::bwe::BweShared>,
    /// Local SSRC -> (clock rate, first RTP timestamp seen).
    local: HashMap<u32, (u32, Option<u32>)>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl SyncReports {
    pub fn new(shared: std::sync::Arc<super::bwe::BweShared>) -> Self {
        Self {
            shared,
            local: HashMap::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    /// The RTP time an SR of `ssrc` sent at `unix_us` should carry, on the capture clock.
    fn rtp_time(&self, ssrc: u32, unix_us: u64) -> Option<u32> {
        let (rate, first) = self.local.get(&ssrc)?;
        let first = (*first)?;
        let anchor = self.shared.sync.anchor(ssrc)?;
        let since_us = unix_us as f64 - anchor.capture_us;
        let ticks = anchor.ticks + (since_us * f64::from(*rate) / 1e6).round() as i64;
        Some(first.wrapping_add(ticks as u32))
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for SyncReports {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                    self.shared.sync.report_received(sr);
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        match &mut msg.message.packet {
            Packet::Rtp(rtp) => {
                if let Some((_, first)) = self.local.get_mut(&rtp.header.ssrc) {
                    first.get_or_insert(rtp.header.timestamp);
                }
            }
            Packet::Rtcp(packets) => {
                for p in packets.iter_mut() {
                    let Some(sr) = p.as_any().downcast_ref::<SenderReport>() else {
                        continue;
                    };
                    let Some(unix_us) = ntp_to_unix_us(sr.ntp_time) else {
                        continue;
                    };
                    if let Some(rtp_time) = self.rtp_time(sr.ssrc, unix_us) {
                        tracing::debug!(
                            ssrc = sr.ssrc,
                            ahead_ticks = rtp_time.wrapping_sub(sr.rtp_time) as i32,
                            "sender report on the capture clock"
                        );
                        *p = Box::new(SenderReport {
                            rtp_time,
                            ..sr.clone()
                        });
                    }
                }
            }
            _ => {}
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for SyncReports {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.local.insert(info.ssrc, (info.clock_rate, None));
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.local.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Never delay one stream for the other by more than this.
pub const MAX_DELAY: Duration = Duration::from_millis(500);
/// How often the audio delay is adjusted, and by how much at most each time.
const AUDIO_UPDATE: Duration = Duration::from_secs(1);
const AUDIO_STEP_MS: f64 = 80.0;
/// Skews smaller than this leave the audio delay alone.
const DEADBAND_MS: f64 = 10.0;
/// Audio older than this says nothing about where audio playout is now.
const AUDIO_STALE: Duration = Duration::from_secs(1);

/// Who waits for whom. Audio reports what it plays (its capture time, by the SRs, and when it was
/// played); video asks, for each decoded frame, how long to hold it. Both delays are measured
/// from capture to playout on the receiver's clock against the sender's (the offset between the
/// two clocks is the same for both streams, so it cancels). Video late: audio's jitter-buffer
/// target grows (`audio_delay`, adjusted once a second, at most 80 ms a step); audio late: video
/// frames are held (`video_ready`), and any audio delay added earlier is taken back first.
#[derive(Debug, Default)]
pub struct LipSync {
    /// Audio capture-to-play delay, smoothed (ms), and when audio last played (µs).
    audio_ms: Option<f64>,
    audio_at_us: u64,
    /// Video minus audio delay before the hold (ms), smoothed over frames.
    skew_ms: Option<f64>,
    audio_delay_ms: f64,
    last_update_us: Option<u64>,
}

impl LipSync {
    /// Audio captured at `capture_us` (sender clock) was played at `play_us` (ours).
    pub fn audio_played(&mut self, capture_us: f64, play_us: u64) {
        let ms = (play_us as f64 - capture_us) / 1000.0;
        let stale = play_us.saturating_sub(self.audio_at_us) > AUDIO_STALE.as_micros() as u64;
        self.audio_ms = Some(match self.audio_ms {
            Some(smoothed) if !stale => smoothed + (ms - smoothed) / 16.0,
            _ => ms,
        });
        self.audio_at_us = play_us;
    }

    /// A video frame captured at `capture_us` (sender clock) is decoded at `now_us` (ours):
    /// how long to hold it before showing it. Zero while audio is not playing.
    pub fn video_ready(&mut self, capture_us: f64, now_us: u64) -> Duration {
        let Some(audio_ms) = self
            .audio_ms
            .filter(|_| now_us.saturating_sub(self.audio_at_us) <= AUDIO_STALE.as_micros() as u64)
        else {
            self.skew_ms = None;
            return Duration::ZERO;
        };
        let video_ms = (now_us as f64 - capture_us) / 1000.0;
        let skew = video_ms - audio_ms;
        let smoothed = match self.skew_ms {
            Some(s) => s + (skew - s) / 8.0,
            None => skew,
        };
        self.skew_ms = Some(smoothed);
        let last = *self.last_update_us.get_or_insert(now_us);
        if now_us.saturating_sub(last) >= AUDIO_UPDATE.as_micros() as u64 {
            self.last_update_us = Some(now_us);
            if smoothed.abs() > DEADBAND_MS {
                let step = smoothed.clamp(-AUDIO_STEP_MS, AUDIO_STEP_MS);
                let max = MAX_DELAY.as_secs_f64() * 1000.0;
                self.audio_delay_ms = (self.audio_delay_ms + step).clamp(0.0, max);
            }
        }
        Duration::from_secs_f64((-smoothed).clamp(0.0, MAX_DELAY.as_secs_f64() * 1000.0) / 1000.0)
    }

    /// What audio playout should add to its jitter-buffer target.
    pub fn audio_delay(&self) -> Duration {
        Duration::from_secs_f64(self.audio_delay_ms / 1000.0)
    }

    /// Audio's capture-to-play delay as it stands (smoothed), in ms.
    pub fn audio_ms(&self) -> Option<f64> {
        self.audio_ms
    }

    /// The skew as it stands (video minus audio, before the hold), in ms.
    pub fn skew_ms(&self) -> Option<f64> {
        self.skew_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_time_converts_and_garbage_is_refused() {
        // 2026-01-01T00:00:00.5Z.
        let unix_s = 1_767_225_600u64;
        let ntp = ((unix_s + NTP_UNIX_OFFSET_S) << 32) | (1 << 31);
        assert_eq!(ntp_to_unix_us(ntp), Some(unix_s * 1_000_000 + 500_000));
        assert_eq!(ntp_to_unix_us(5 << 32), None);
    }

    #[test]
    fn the_rtp_clock_follows_capture_time_without_drift() {
        let mut clock = RtpClock::new(90_000);
        let frame = Duration::from_micros(33_333);
        let t0 = 1_700_000_000_000_000u64;
        // An hour of 30 fps frames with 2 ms of jitter, then a 1 s gap.
        let mut ticks = 0u64;
        for n in 0..108_000u64 {
            let capture = t0 + n * 33_333 + (n % 3) * 1000;
            let (duration, own, anchor) = clock.sample(capture, frame);
            assert_eq!(own, ticks);
            // What webrtc-rs does with the duration.
            let advance = (duration.as_secs_f64() * 90_000.0) as u64;
            let on_clock = (capture - t0) * 90_000 / 1_000_000;
            assert_eq!(anchor.ticks, on_clock as i64);
            if n > 0 {
                // Each frame's timestamp is within the jitter of its capture time.
                assert!(
                    ticks.abs_diff(on_clock) <= 3 * 90,
                    "frame {n}: {ticks} vs {on_clock}"
                );
            }
            ticks += advance;
        }
        let capture = t0 + 108_000 * 33_333 + 1_000_000;
        let (duration, _, _) = clock.sample(capture, frame);
        let on_clock = (capture - t0) * 90_000 / 1_000_000;
        // The frame after the gap is early; the one after it is on the clock again.
        assert!(ticks < on_clock - 80_000);
        ticks += (duration.as_secs_f64() * 90_000.0) as u64;
        assert_eq!(ticks, on_clock + 2999);
    }

    #[test]
    fn an_sr_maps_a_timestamp_to_its_capture_time() {
        let shared = SyncShared::default();
        assert_eq!(shared.capture_us(7, 1000, 48_000), None);
        let unix_us = 1_767_225_600_000_000u64;
        let ntp = (unix_us / 1_000_000 + NTP_UNIX_OFFSET_S) << 32;
        shared.report_received(&SenderReport {
            ssrc: 7,
            ntp_time: ntp,
            rtp_time: u32::MAX - 479,
            ..Default::default()
        });
        // 960 ticks later (across the wrap) is 20 ms later; 480 before is 10 ms before.
        assert_eq!(
            shared.capture_us(7, 480, 48_000),
            Some(unix_us as f64 + 20_000.0)
        );
        assert_eq!(
            shared.capture_us(7, u32::MAX - 959, 48_000),
            Some(unix_us as f64 - 10_000.0)
        );
        assert_eq!(shared.reports_received.load(Ordering::Relaxed), 1);
    }

    /// Runs `LipSync` against streams whose capture-to-ready delays are fixed (ms); audio's grows
    /// by what `LipSync` asks for, as a jitter buffer's would (at once, for simplicity). Returns
    /// the skew the person sees at the end (video shown minus audio played, ms), the hold and the
    /// audio delay.
    fn converge(video_ms: f64, audio_ms: f64, seconds: u64) -> (f64, Duration, Duration) {
        let mut sync = LipSync::default();
        let t0 = 1_767_225_600_000_000u64;
        let mut hold = Duration::ZERO;
        for ms in 0..seconds * 1000 {
            let now = t0 + ms * 1000;
            if ms % 10 == 0 {
                let played_ms = audio_ms + sync.audio_delay().as_secs_f64() * 1000.0;
                sync.audio_played(now as f64 - played_ms * 1000.0, now);
            }
            if ms % 33 == 0 {
                hold = sync.video_ready(now as f64 - video_ms * 1000.0, now);
            }
        }
        let audio = audio_ms + sync.audio_delay().as_secs_f64() * 1000.0;
        let seen = video_ms + hold.as_secs_f64() * 1000.0 - audio;
        (seen, hold, sync.audio_delay())
    }

    #[test]
    fn late_video_delays_audio_and_late_audio_holds_video() {
        // Video 100 ms behind audio: audio waits, video is held no more than the deadband (what
        // the audio delay's last step overshot).
        let (skew, hold, audio) = converge(130.0, 30.0, 5);
        assert!(skew.abs() <= DEADBAND_MS, "{skew}");
        assert!(hold.as_secs_f64() * 1000.0 <= DEADBAND_MS, "{hold:?}");
        assert!((90..=110).contains(&audio.as_millis()), "{audio:?}");
        // Audio 100 ms behind video: video is held, audio gets nothing.
        let (skew, hold, audio) = converge(20.0, 120.0, 5);
        assert!(skew.abs() <= 1.0, "{skew}");
        assert!((99..=101).contains(&hold.as_millis()), "{hold:?}");
        assert_eq!(audio, Duration::ZERO);
        // Bounded: 2 s apart is corrected by 500 ms at most either way.
        let (_, _, audio) = converge(2030.0, 30.0, 20);
        assert_eq!(audio, MAX_DELAY);
        let (_, hold, _) = converge(20.0, 2020.0, 5);
        assert_eq!(hold, MAX_DELAY);
    }

    #[test]
    fn without_audio_video_is_not_held() {
        let mut sync = LipSync::default();
        let t0 = 1_767_225_600_000_000u64;
        assert_eq!(sync.video_ready(t0 as f64, t0 + 20_000), Duration::ZERO);
        // Audio that stopped two seconds ago does not count.
        sync.audio_played(t0 as f64, t0 + 300_000);
        assert_eq!(sync.video_ready(t0 as f64, t0 + 2_400_000), Duration::ZERO);
        assert_eq!(sync.skew_ms(), None);
    }
}
