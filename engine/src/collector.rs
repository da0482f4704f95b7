//! Shared call statistics: every pipeline adds to one `Collector` behind a mutex (a few times per
//! frame at most), and `snapshot` turns it into the `CallStats` contract. Measurements go into
//! fixed-size histograms, so a snapshot never sorts or grows under the lock. It also does the
//! stamp-based analysis of received video: latency from the stamp's capture time, lost frames from
//! gaps in stamp indices, and PSNR against the regenerated source frame.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use super::stats::{CallStats, FileStats, FreezeDetector, Histogram, RateMeter, Second};
use confab_codecs::h264::EncodedFrame;
use confab_media::stamp::{self, Stamp};
use confab_media::{clock, convert, pattern, quality, VideoFrame};

#[derive(Default)]
pub struct Collector {
    pub stats: CallStats,
    started: Option<Instant>,
    encode_ms: Histogram,
    qp: Histogram,
    decode_ms: Histogram,
    assembly_ms: Histogram,
    video_latency_ms: Histogram,
    psnr_db: Histogram,
    audio_latency_ms: Histogram,
    audio_held_ms: Histogram,
    audio_capture_ms: Histogram,
    audio_sent_ms: Histogram,
    audio_processing_ms: Histogram,
    audio_transit_ms: Histogram,
    audio_waited_ms: Histogram,
    audio_estimated_ms: Histogram,
    speaker_delay_ms: Histogram,
    sync_skew_ms: Histogram,
    sync_estimated_skew_ms: Histogram,
    sync_hold_ms: Histogram,
    /// The stamp latency of the last frame shown, and when (for the skew at the next marker).
    last_video_latency: Option<(f64, Instant)>,
    /// The skew and the audio latency at the last marker of the current second.
    second_skew_ms: Option<f64>,
    second_audio_ms: Option<f64>,
    freezes: FreezeDetector,
    send_rate: RateMeter,
    recv_rate: RateMeter,
    first_decoded: Option<Instant>,
    last_decoded: Option<Instant>,
    stamp_range: Option<(u32, u32)>,
    /// When the call ended (a stall that lasted to the end is measured to here, not to now).
    ended: Option<Instant>,
    timeline: VecDeque<Second>,
    /// The counters at the last `tick_second`.
    last_tick: Option<(Instant, TickCounts)>,
}

/// Counters a second's sample is the difference of.
#[derive(Debug, Clone, Copy, Default)]
struct TickCounts {
    encoded: u64,
    keyframes: u64,
    decoded: u64,
    concealed: u64,
    played: u64,
}

/// A shown frame older than this says nothing about the skew at a marker (video stalled).
const SKEW_FRAME_AGE: Duration = Duration::from_millis(200);

/// A stamp whose capture time is further than this from now was not stamped live by a clock like
/// ours: a recording of the test pattern (the side-by-side's .y4m) carries the times it was
/// rendered at, which read as 56 years of latency. No latency or skew is read from such a stamp;
/// its index and PSNR still count.
const LIVE_STAMP_US: u64 = 60_000_000;

/// Seconds of timeline kept.
const TIMELINE_SECONDS: usize = 600;

/// One stamped frame in this many is compared with its source for `psnr_db` (the first always).
const PSNR_EVERY: u64 = 4;

/// What a decoded frame's stamp says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StampReading {
    pub stamp: Stamp,
    /// Luma PSNR against the regenerated source, for one stamped frame in `PSNR_EVERY`.
    pub psnr_db: Option<f64>,
}

/// The largest source the receiver regenerates for PSNR (a stamp is the other peer's to write).
const PSNR_MAX_SOURCE_PIXELS: u32 = 3840 * 2160;

/// Reads the stamps of decoded frames and samples their PSNR, on the decoding thread: rendering
/// the source again and comparing costs a third of a decode, too much to do under the stats
/// lock, and it renders into frames kept for it rather than new ones each time.
///
/// A frame the sender scaled (a lower rung of its ladder) is compared with the source rendered
/// at the size the stamp says it was captured at and scaled the way the sender scales
/// (`convert::scale`), not with the pattern rendered at the smaller size, whose squares sit
/// elsewhere.
#[derive(Debug, Default)]
pub struct StampReader {
    stamped: u64,
    source: Option<VideoFrame>,
    scaled: Option<VideoFrame>,
}

impl StampReader {
    pub fn read(&mut self, frame: &VideoFrame) -> Option<StampReading> {
        let stamp::Stamped {
            stamp,
            source_width,
            source_height,
        } = stamp::read_stamped(frame)?;
        self.stamped += 1;
        let (width, height) = (frame.width, frame.height);
        let comparable = source_width >= width
            && source_height >= height
            && source_width * source_height <= PSNR_MAX_SOURCE_PIXELS;
        let psnr_db = if self.stamped % PSNR_EVERY == 1 && comparable {
            let source = match &mut self.source {
                Some(source) if (source.width, source.height) == (source_width, source_height) => {
                    source
                }
                slot => slot.insert(VideoFrame::black(source_width, source_height, 0)),
            };
            pattern::render_into(source, stamp.index, stamp.capture_ts_us);
            if (source_width, source_height) == (width, height) {
                quality::psnr_y(source, frame)
            } else {
                // `scale_to` sizes its output itself.
                let scaled = self
                    .scaled
                    .get_or_insert_with(|| VideoFrame::black(width, height, 0));
                convert::scale_to(source, width, height, scaled);
                quality::psnr_y(scaled, frame)
            }
        } else {
            None
        };
        Some(StampReading { stamp, psnr_db })
    }
}

/// A cloneable handle on the call's statistics.
#[derive(Clone, Default)]
pub struct StatsHandle(Arc<Mutex<Collector>>);

impl StatsHandle {
    pub fn new(started: Instant) -> Self {
        let handle = Self::default();
        {
            let mut c = handle.lock();
            c.started = Some(started);
            let ago = u64::try_from(started.elapsed().as_micros()).unwrap_or(0);
            c.stats.joined_epoch_ms = clock::now_us().saturating_sub(ago) / 1000;
        }
        handle
    }

    pub fn lock(&self) -> MutexGuard<'_, Collector> {
        // Statistics are counters; a panic elsewhere while holding the lock leaves them usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> CallStats {
        self.lock().snapshot()
    }
}

impl Collector {
    fn since_start(&self, now: Instant) -> Duration {
        self.started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    /// Milliseconds from the start of `join` to now.
    pub fn ms_now(&self) -> u64 {
        self.since_start(Instant::now()).as_millis() as u64
    }

    /// The call's first offer was made here or came from the other peer.
    pub fn offer_seen(&mut self) {
        if self.stats.ms_to.offer.is_none() {
            self.stats.ms_to.offer = Some(self.ms_now());
        }
    }

    pub fn frame_captured(&mut self) {
        self.stats.video_send.frames_captured += 1;
    }

    pub fn frame_encoded(
        &mut self,
        frame: &EncodedFrame,
        encode: Duration,
        width: u32,
        height: u32,
    ) {
        let s = &mut self.stats.video_send;
        s.frames_encoded += 1;
        s.keyframes += u64::from(frame.keyframe);
        s.width = width;
        s.height = height;
        s.deblocking = frame.deblocking;
        self.encode_ms.record(encode.as_secs_f64() * 1000.0);
        if let Some(qp) = frame.qp {
            self.qp.record(f64::from(qp));
        }
        let bytes = frame.data.len();
        let at = self.since_start(Instant::now());
        self.send_rate.add(at, bytes as u64);
    }

    /// A frame the encoder's rate control skipped.
    pub fn frame_skipped_by_encoder(&mut self) {
        self.stats.video_send.frames_skipped_encoder += 1;
    }

    /// A frame left out to send the ladder rung's lower frame rate.
    pub fn frame_thinned(&mut self) {
        self.stats.video_send.frames_thinned += 1;
    }

    /// A frame not encoded because the network side was behind.
    pub fn frame_skipped_congestion(&mut self) {
        self.stats.video_send.frames_skipped_congestion += 1;
    }

    /// What the encoder aims for, at which rung, and why.
    pub fn video_target(&mut self, bps: u32, max_fps: u32, limitation: super::stats::Limitation) {
        let s = &mut self.stats.video_send;
        s.target_kbps = f64::from(bps) / 1000.0;
        s.max_fps = max_fps;
        s.quality_limitation = limitation;
    }

    /// An encoded frame the network side could not take in time.
    pub fn frame_dropped_before_send(&mut self) {
        self.stats.video_send.frames_dropped += 1;
    }

    pub fn keyframe_request_received(&mut self) {
        self.stats.video_send.keyframe_requests_received += 1;
    }

    /// A complete frame left the assembler after `assembly` (first packet to last).
    pub fn video_frame_received(&mut self, bytes: usize, assembly: Duration) {
        self.stats.video_recv.frames_received += 1;
        self.assembly_ms.record(assembly.as_secs_f64() * 1000.0);
        let at = self.since_start(Instant::now());
        self.recv_rate.add(at, bytes as u64);
    }

    /// A decoded remote frame: counts it, and when it carries a stamp (`reading`), measures
    /// latency, loss and PSNR against the regenerated test pattern.
    pub fn frame_decoded(
        &mut self,
        frame: &VideoFrame,
        decode: Duration,
        reading: Option<StampReading>,
    ) {
        let now = Instant::now();
        if self.stats.ms_to.first_video_frame.is_none() {
            self.stats.ms_to.first_video_frame = Some(self.ms_now());
        }
        let at = self.since_start(now);
        let r = &mut self.stats.video_recv;
        r.frames_decoded += 1;
        r.width = frame.width;
        r.height = frame.height;
        self.decode_ms.record(decode.as_secs_f64() * 1000.0);
        self.first_decoded.get_or_insert(now);
        self.last_decoded = Some(now);
        self.freezes.frame(at);
        if let Some(StampReading { stamp: s, psnr_db }) = reading {
            r.stamped_frames += 1;
            let now_us = clock::now_us();
            if now_us.abs_diff(s.capture_ts_us) <= LIVE_STAMP_US {
                let latency_ms = now_us.saturating_sub(s.capture_ts_us) as f64 / 1000.0;
                self.video_latency_ms.record(latency_ms);
                self.last_video_latency = Some((latency_ms, now));
            }
            self.stamp_range = Some(match self.stamp_range {
                None => (s.index, s.index),
                Some((lo, hi)) => (lo.min(s.index), hi.max(s.index)),
            });
            if let Some(psnr) = psnr_db {
                self.psnr_db.record(psnr);
            }
        }
    }

    pub fn audio_encoded(&mut self) {
        self.stats.audio_send.frames_encoded += 1;
    }

    /// A test-signal marker was played `latency_us` after it was captured: with a stamped frame
    /// shown lately, the audio/video skew is measured too.
    pub fn audio_latency(&mut self, latency_us: u64) {
        let audio_ms = latency_us as f64 / 1000.0;
        self.audio_latency_ms.record(audio_ms);
        self.second_audio_ms = Some(audio_ms);
        if let Some((video_ms, at)) = self.last_video_latency {
            if at.elapsed() < SKEW_FRAME_AGE {
                let skew = video_ms - audio_ms;
                self.sync_skew_ms.record(skew);
                self.second_skew_ms = Some(skew);
            }
        }
    }

    /// Lip sync held a decoded frame for `hold`; `skew_ms`: the skew estimated from the sender
    /// reports once it is shown.
    pub fn video_held(&mut self, hold: Duration, skew_ms: Option<f64>) {
        self.sync_hold_ms.record(hold.as_secs_f64() * 1000.0);
        if let Some(skew) = skew_ms {
            self.sync_estimated_skew_ms.record(skew);
        }
    }

    /// A frame held for lip sync was shown early: the hold queue was full.
    pub fn video_shown_early(&mut self) {
        self.stats.sync.frames_shown_early += 1;
    }

    /// A frame was played with `held_ms` of audio still waiting behind it in the jitter buffer.
    pub fn audio_held(&mut self, held_ms: f64) {
        self.audio_held_ms.record(held_ms);
    }

    /// A packet was encoded `ms` after its first sample was captured.
    pub fn audio_captured(&mut self, ms: f64) {
        self.audio_capture_ms.record(ms);
    }

    /// A packet was handed to the track `ms` after its first sample was captured.
    pub fn audio_sent(&mut self, ms: f64) {
        self.audio_sent_ms.record(ms);
    }

    /// A test-signal marker's onset came out of audio processing `ms` after it went in.
    pub fn audio_processed(&mut self, ms: f64) {
        self.audio_processing_ms.record(ms);
    }

    /// A packet reached the jitter buffer `ms` after its first sample was captured.
    pub fn audio_arrived(&mut self, ms: f64) {
        self.audio_transit_ms.record(ms);
    }

    /// A packet was played after waiting `waited_ms` in the jitter buffer, `latency_ms` (when
    /// the sender reports tell) after it was captured.
    pub fn audio_packet_played(&mut self, waited_ms: f64, latency_ms: Option<f64>) {
        self.audio_waited_ms.record(waited_ms);
        if let Some(ms) = latency_ms {
            self.audio_estimated_ms.record(ms);
        }
    }

    /// A frame was written to a speaker that plays it `ms` later.
    pub fn speaker_delay(&mut self, ms: f64) {
        self.speaker_delay_ms.record(ms);
    }

    pub fn first_audio(&mut self) {
        if self.stats.ms_to.first_audio.is_none() {
            self.stats.ms_to.first_audio = Some(self.ms_now());
        }
    }

    /// The call is over: measure a stall that lasted to the end up to now.
    pub fn call_ended(&mut self) {
        self.ended.get_or_insert_with(Instant::now);
    }

    /// Adds one second to the timeline (called once a second while connected).
    pub fn tick_second(&mut self) {
        let now = Instant::now();
        let counts = self.tick_counts();
        let (elapsed, before) = match self.last_tick.replace((now, counts)) {
            Some((at, before)) => (now.duration_since(at).as_secs_f64().max(0.001), before),
            None => (1.0, TickCounts::default()),
        };
        let played = counts.played.saturating_sub(before.played);
        let (send, recv) = (&self.stats.video_send, &self.stats.video_recv);
        let ongoing = self.freezes.ongoing(self.since_start(now));
        let second = Second {
            t_s: self.since_start(now).as_secs_f64(),
            send_kbps: self.send_rate.kbps_at(self.since_start(now)),
            target_kbps: send.target_kbps,
            send_width: send.width,
            send_height: send.height,
            send_fps: counts.encoded.saturating_sub(before.encoded) as f64 / elapsed,
            keyframes_sent: counts.keyframes.saturating_sub(before.keyframes),
            quality_limitation: send.quality_limitation,
            recv_kbps: self.recv_rate.kbps(),
            recv_fps: counts.decoded.saturating_sub(before.decoded) as f64 / elapsed,
            recv_width: recv.width,
            recv_height: recv.height,
            freezes: self.freezes.freezes + u64::from(ongoing.is_some()),
            audio_concealed: if played > 0 {
                counts.concealed.saturating_sub(before.concealed) as f64 / played as f64
            } else {
                0.0
            },
            rtt_ms: self.stats.ice.rtt_ms,
            av_skew_ms: self.second_skew_ms.take(),
            audio_latency_ms: self.second_audio_ms.take(),
        };
        if self.timeline.len() == TIMELINE_SECONDS {
            self.timeline.pop_front();
        }
        self.timeline.push_back(second);
    }

    fn tick_counts(&self) -> TickCounts {
        let a = &self.stats.audio_recv;
        TickCounts {
            encoded: self.stats.video_send.frames_encoded,
            keyframes: self.stats.video_send.keyframes,
            decoded: self.stats.video_recv.frames_decoded,
            concealed: a.frames_concealed,
            played: a.frames_decoded + a.frames_recovered_fec + a.frames_concealed,
        }
    }

    pub fn file(&mut self, file: FileStats) {
        self.stats.files.push(file);
    }

    pub fn snapshot(&self) -> CallStats {
        let mut stats = self.stats.clone();
        stats.duration_s = self.since_start(Instant::now()).as_secs_f64();
        stats.video_send.encode_ms = self.encode_ms.summary();
        stats.video_send.qp = self.qp.summary();
        stats.video_send.bitrate_kbps = self.send_rate.kbps();
        let r = &mut stats.video_recv;
        r.decode_ms = self.decode_ms.summary();
        r.assembly_ms = self.assembly_ms.summary();
        r.latency_ms = self.video_latency_ms.summary();
        r.psnr_db = self.psnr_db.summary();
        r.freezes = self.freezes.freezes;
        r.total_freeze_ms = self.freezes.total_freeze_ms;
        let end = self.ended.unwrap_or_else(Instant::now);
        if let Some(ms) = self.freezes.ongoing(self.since_start(end)) {
            r.freezes += 1;
            r.total_freeze_ms += ms;
        }
        r.bitrate_kbps = self.recv_rate.kbps();
        if let (Some(first), Some(last)) = (self.first_decoded, self.last_decoded) {
            let span = last.duration_since(first).as_secs_f64();
            if span > 0.0 {
                r.fps = (r.frames_decoded.saturating_sub(1)) as f64 / span;
            }
        }
        if let Some((lo, hi)) = self.stamp_range {
            r.frames_lost = (u64::from(hi - lo) + 1).saturating_sub(r.stamped_frames);
        }
        stats.audio_recv.latency_ms = self.audio_latency_ms.summary();
        stats.audio_recv.held_ms = self.audio_held_ms.summary();
        stats.audio_send.capture_to_encoded_ms = self.audio_capture_ms.summary();
        stats.audio_send.capture_to_sent_ms = self.audio_sent_ms.summary();
        stats.audio_send.processing_ms = self.audio_processing_ms.summary();
        stats.audio_recv.transit_ms = self.audio_transit_ms.summary();
        stats.audio_recv.waited_ms = self.audio_waited_ms.summary();
        stats.audio_recv.latency_estimated_ms = self.audio_estimated_ms.summary();
        stats.audio_recv.speaker_delay_ms = self.speaker_delay_ms.summary();
        stats.sync.skew_ms = self.sync_skew_ms.summary();
        stats.sync.estimated_skew_ms = self.sync_estimated_skew_ms.summary();
        stats.sync.video_hold_ms = self.sync_hold_ms.summary();
        let a = &mut stats.audio_recv;
        let played =
            a.frames_decoded + a.frames_recovered_fec + a.frames_concealed + a.frames_stretched;
        if played > 0 {
            a.concealed_ratio = a.frames_concealed as f64 / played as f64;
        }
        stats.timeline = self.timeline.iter().copied().collect();
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_reader_reads_every_stamp_and_samples_psnr_at_any_size() {
        let mut reader = StampReader::default();
        assert_eq!(
            reader.read(&VideoFrame::black(640, 360, 0)),
            None,
            "no stamp"
        );
        let mut psnr = Vec::new();
        for (i, (w, h)) in [(640, 360); 6]
            .into_iter()
            .chain([(320, 180); 3])
            .enumerate()
        {
            let i = i as u32;
            let mut frame = pattern::render(i, w, h, 1_000 + u64::from(i));
            if i % 2 == 1 {
                // A lossy copy: PSNR below the cap.
                frame
                    .data
                    .iter_mut()
                    .step_by(7)
                    .for_each(|p| *p = p.wrapping_add(9));
            }
            let reading = reader.read(&frame).expect("stamped");
            assert_eq!(
                reading.stamp,
                Stamp {
                    index: i,
                    capture_ts_us: 1_000 + u64::from(i)
                }
            );
            psnr.push(reading.psnr_db);
        }
        // The first stamped frame and one in PSNR_EVERY after it; identical frames cap at 100,
        // and the smaller frames are compared with a source of their own size.
        let sampled: Vec<usize> = (0..psnr.len()).filter(|i| psnr[*i].is_some()).collect();
        assert_eq!(sampled, [0, 4, 8]);
        assert_eq!(psnr[0], Some(100.0));
        assert_eq!(psnr[4], Some(100.0));
        assert_eq!(psnr[8], Some(100.0));
        let mut lossy = pattern::render(9, 320, 180, 7);
        lossy
            .data
            .iter_mut()
            .step_by(7)
            .for_each(|p| *p = p.wrapping_add(9));
        for _ in 0..3 {
            reader.read(&lossy);
        }
        let db = reader
            .read(&lossy)
            .and_then(|r| r.psnr_db)
            .expect("sampled");
        assert!((20.0..60.0).contains(&db), "{db}");
    }

    #[test]
    fn a_recorded_stamp_gives_no_latency_but_still_counts() {
        let stats = StatsHandle::new(Instant::now());
        let decoded = |capture_ts_us: u64, index: u32| {
            let frame = VideoFrame::black(64, 36, 0);
            let reading = StampReading {
                stamp: Stamp {
                    index,
                    capture_ts_us,
                },
                psnr_db: Some(40.0),
            };
            stats
                .lock()
                .frame_decoded(&frame, Duration::from_millis(1), Some(reading));
        };
        // A .y4m of the pattern rendered from time 0, played now.
        decoded(33_333, 1);
        decoded(66_666, 2);
        let s = stats.snapshot();
        assert_eq!(s.video_recv.stamped_frames, 2);
        assert_eq!(
            s.video_recv.latency_ms.count, 0,
            "{:?}",
            s.video_recv.latency_ms
        );
        assert_eq!(s.video_recv.psnr_db.count, 2);
        // Stamped live, 20 ms ago.
        decoded(clock::now_us() - 20_000, 3);
        let s = stats.snapshot();
        assert_eq!(s.video_recv.latency_ms.count, 1);
        assert!((20.0..1000.0).contains(&s.video_recv.latency_ms.p50));
    }

    #[test]
    fn a_scaled_stream_is_compared_with_its_source_scaled_as_the_sender_does() {
        // The sender's ladder scales its 720p camera: the frames carry the source's stamp.
        for (w, h) in [(960, 540), (480, 270), (320, 180)] {
            let sent = convert::scale(&pattern::render(77, 1280, 720, 5), w, h);
            let mut reader = StampReader::default();
            let reading = reader
                .read(&sent)
                .unwrap_or_else(|| panic!("no stamp read at {w}x{h}"));
            assert_eq!(reading.stamp.index, 77);
            assert_eq!(reading.psnr_db, Some(100.0), "{w}x{h}");
            // The pattern rendered at the smaller size is another picture (~20 dB).
            let other = quality::psnr_y(&pattern::render(77, w, h, 5), &sent).unwrap();
            assert!(other < 30.0, "{w}x{h}: {other}");
        }
        // A stamp that claims a source larger than the reader regenerates: read, not compared.
        let huge = convert::scale(&pattern::render(3, 4096, 2304, 5), 640, 360);
        let reading = StampReader::default().read(&huge).expect("stamped");
        assert_eq!((reading.stamp.index, reading.psnr_db), (3, None));
    }
}
