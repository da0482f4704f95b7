//! The send pipelines. Video: a named thread pulls frames from the source, encodes them with
//! openh264 (a keyframe when the receiver asks) and hands them to a tokio task that packetizes them
//! onto the track; a second task listens for keyframe requests. Audio: a thread reads 10 ms blocks,
//! encodes them into Opus packets of 10 ms (20 ms on a tight link), and a task writes them. Hand-over queues are bounded: when the network side falls
//! behind, frames are dropped (and counted), never queued without end.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media::Sample;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

use super::bwe::BweShared;
use super::collector::StatsHandle;
use super::keyframe_forwarder::is_keyframe_request;
use super::ladder::{self, FrameGate, KeyframeLimiter, Ladder, Limitation, Rung};
use super::media_engine::TestHooks;
use super::sync::{Anchor, RtpClock, AUDIO_CLOCK_HZ, VIDEO_CLOCK_HZ};
use super::thread_load::{ThreadLoad, Verdict, Window};
use confab_codecs::apm::AudioProcessor;
use confab_codecs::h264::{DeblockingPolicy, EncoderSettings, H264Encoder};
use confab_codecs::opus::{OpusEncoder, DEFAULT_EXPECTED_LOSS_PERCENT};
use confab_codecs::CodecError;
use confab_media::audio::{LevelMeter, BLOCK_SAMPLES, FRAME_SAMPLES};
use confab_media::test_signal::{self, MarkerDetector};
use confab_media::{clock, VideoFrame};
use confab_media::{AudioSource, VideoSource};

/// Something went wrong in a pipeline thread; the session reports it and carries on without it.
/// Bounded: a thread reports with `try_send`, and a report that finds the queue full is only
/// logged (the person has plenty to read already).
pub type PipelineErrors = mpsc::Sender<String>;

/// Reports a pipeline problem without blocking.
pub fn report(errors: &PipelineErrors, problem: String) {
    if let Err(err) = errors.try_send(problem) {
        tracing::warn!(problem = %err.into_inner(), "pipeline problem not reported: the queue is full");
    }
}

/// A running send pipeline; stops (and joins its thread) on drop.
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pipeline {
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where encoded media goes: a track, its SSRC and negotiated payload type.
#[derive(Clone)]
pub struct TrackOut {
    pub track: Arc<TrackLocalStaticSample>,
    pub ssrc: u32,
    pub payload_type: u8,
}

struct Encoded {
    data: Vec<u8>,
    duration: Duration,
    at: Instant,
    /// Its RTP timestamp, in ticks since the stream's first sample's, and where the capture clock
    /// stands in the same ticks (lip sync).
    ticks: u64,
    anchor: Option<Anchor>,
    /// Wall-clock µs its first sample was captured, when the writer should time it (0: not).
    capture_us: u64,
}

/// Encoded media held back at most (a test delay); more is dropped.
const DELAYED_MAX: usize = 256;

/// Writes what the encoder thread hands over onto the track, and publishes where its RTP clock
/// stands against the capture clock into `rate.sync`, counted from the first sample the track
/// took (samples written before the track was bound never reach the wire). With a `delay` (a
/// test hook: a sender whose one path is slower), each sample waits that long first, its
/// timestamps kept. `stats`: where the time from capture to the track goes (audio).
fn spawn_writer(
    out: TrackOut,
    clock_rate: u32,
    mut rx: mpsc::Receiver<Encoded>,
    rate: Arc<BweShared>,
    delay: Duration,
    stats: Option<StatsHandle>,
) {
    tokio::spawn(async move {
        let mut delayed: VecDeque<(tokio::time::Instant, Encoded)> = VecDeque::new();
        let mut stamps = WrittenStamps::new(clock_rate);
        loop {
            let e = if let Some(&(due, _)) = delayed.front() {
                tokio::select! {
                    received = rx.recv() => match received {
                        Some(e) => {
                            if delayed.len() < DELAYED_MAX {
                                delayed.push_back((tokio::time::Instant::now() + delay, e));
                            }
                            continue;
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(due) => match delayed.pop_front() {
                        Some((_, e)) => e,
                        None => continue,
                    },
                }
            } else {
                match rx.recv().await {
                    Some(e) if !delay.is_zero() => {
                        delayed.push_back((tokio::time::Instant::now() + delay, e));
                        continue;
                    }
                    Some(e) => e,
                    None => break,
                }
            };
            let sample = Sample {
                data: Bytes::from(e.data),
                duration: e.duration,
                ..Sample::new(e.at)
            };
            let result = out
                .track
                .sample_writer(out.ssrc, out.payload_type)
                .write_sample(&sample)
                .await;
            // The packetizer stamped it (a failed send comes after that).
            let anchor = stamps.written(e.ticks, e.duration, e.anchor, result.is_ok());
            match result {
                Ok(()) => {
                    if let Some(stats) = stats.as_ref().filter(|_| e.capture_us > 0) {
                        let ms = clock::now_us().saturating_sub(e.capture_us) as f64 / 1000.0;
                        stats.lock().audio_sent(ms);
                    }
                    if let Some(anchor) = anchor {
                        rate.sync.set_anchor(out.ssrc, anchor);
                    }
                }
                Err(err) => tracing::debug!(%err, "could not send a sample"),
            }
        }
    });
}

/// The RTP timestamps the track's packetizer gave the samples written, in ticks since the first
/// one the track took (before it is bound, a write fails after the packetizer stamped it): it
/// stamps each with the sum of the durations written before it, so a sample dropped
/// before the track (its queue full while the network side was stalled) is not in them. The
/// anchors published for lip sync and the sender reports follow these stamps, not the encoder's
/// count: counted by the encoder, every frame dropped moved the other side's reading of the
/// capture clock by its length for the rest of the call (a 6 s stall read as 6 s of mouth to
/// ear; NOTES.md, "A call that stalled").
struct WrittenStamps {
    clock_rate: f64,
    /// The next sample's stamp.
    next: i64,
    /// The stamp of the first sample the track took.
    origin: Option<i64>,
}

impl WrittenStamps {
    fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: f64::from(clock_rate),
            next: 0,
            origin: None,
        }
    }

    /// A sample the encoder counted at `ticks`, lasting `duration`, went to the packetizer, and
    /// the track took it (`sent`) or not: the anchor to publish for it, on the stamps the
    /// packetizer gave; none for a sample not sent.
    fn written(
        &mut self,
        ticks: u64,
        duration: Duration,
        anchor: Option<Anchor>,
        sent: bool,
    ) -> Option<Anchor> {
        let stamp = self.next;
        // As the packetizer counts a sample's length.
        self.next += (duration.as_secs_f64() * self.clock_rate) as u32 as i64;
        if !sent {
            return None;
        }
        let origin = *self.origin.get_or_insert(stamp);
        anchor.map(|anchor| Anchor {
            // Where the anchor stands against this sample's own first tick, moved onto its stamp.
            ticks: stamp - origin + (anchor.ticks - ticks as i64),
            ..anchor
        })
    }
}

/// Answers keyframe requests (PLI/FIR) arriving for this track.
fn spawn_keyframe_listener(
    track: Arc<TrackLocalStaticSample>,
    flag: Arc<AtomicBool>,
    stats: StatsHandle,
) {
    tokio::spawn(async move {
        while let Some(event) = track.poll().await {
            let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                continue;
            };
            if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                tracing::debug!("keyframe requested");
                flag.store(true, Ordering::Relaxed);
                stats.lock().keyframe_request_received();
            }
        }
    });
}

/// Changes what the video pipeline sends, without touching the track (so no renegotiation).
pub enum VideoControl {
    /// Send from this source now (screen sharing starts); the current one waits underneath.
    Push(Box<dyn VideoSource>, EncoderSettings),
    /// Go back to the source underneath (screen sharing stops); with none, send nothing.
    Pop,
    /// Camera off (true) or on: while paused nothing is read or sent, after one black frame so
    /// the other side does not keep the last picture.
    Paused(bool),
    /// Another camera: it replaces the camera at the bottom of the stack (under a shared screen,
    /// it is what "stop sharing" returns to); camera off stays off.
    Camera(Box<dyn VideoSource>, EncoderSettings),
}

/// What the encode thread sends from: a stack of sources (newest on top), and camera-off state.
struct Sources {
    stack: Vec<(Box<dyn VideoSource>, EncoderSettings)>,
    paused: bool,
    /// One black frame to send when the camera goes off.
    black: Option<VideoFrame>,
    last_size: (u32, u32),
}

impl Sources {
    /// Carries out `msg`; returns whether what is read from changed (a new encoder then starts,
    /// with a keyframe, at the new source's size).
    fn apply(&mut self, msg: VideoControl) -> bool {
        match msg {
            VideoControl::Push(source, settings) => self.stack.push((source, settings)),
            VideoControl::Pop => drop(self.stack.pop()),
            VideoControl::Camera(source, settings) => {
                match self.stack.first_mut() {
                    // The old camera closes here, on the encode thread.
                    Some(bottom) if !bottom.1.screen => *bottom = (source, settings),
                    // No camera yet (none at the start, or only a shared screen).
                    _ => self.stack.insert(0, (source, settings)),
                }
                return self.stack.len() == 1;
            }
            VideoControl::Paused(on) => {
                if on && !self.paused {
                    self.black = Some(VideoFrame::black(
                        self.last_size.0,
                        self.last_size.1,
                        clock::now_us(),
                    ));
                }
                self.paused = on;
            }
        }
        true
    }
}

/// What the network lets media use, as the encode threads read it before every frame from the
/// congestion controller's published state (written by the transport's estimator and pacer).
impl BweShared {
    /// The bits per second video may use now, `None` before the first estimate: the target less
    /// what audio needs (with its packet overhead), with headroom for headers and resends.
    pub fn video_bps(&self) -> Option<u32> {
        let target = self.target_bps.load(Ordering::Relaxed);
        (target > 0).then(|| {
            let video = (target as f64 * VIDEO_SHARE) as u64;
            let audio = if target >= SHORT_AUDIO_MIN_BPS {
                AUDIO_RESERVE_SHORT_BPS
            } else {
                AUDIO_RESERVE_BPS
            };
            video.saturating_sub(audio).min(u64::from(u32::MAX)) as u32
        })
    }

    /// How much audio goes in one packet: 10 ms (the least delay) while the link has room for
    /// twice the packets, 20 ms below `SHORT_AUDIO_MIN_BPS` (and before any estimate: 10 ms).
    pub fn audio_packet_samples(&self) -> usize {
        let target = self.target_bps.load(Ordering::Relaxed);
        if target == 0 || target >= SHORT_AUDIO_MIN_BPS {
            BLOCK_SAMPLES
        } else {
            FRAME_SAMPLES
        }
    }

    /// The loss Opus's FEC should expect, in percent, once the network reports any: the measured
    /// loss with a quarter more for safety, at most 25%; `None` while nothing is measured.
    pub fn expected_loss_percent(&self) -> Option<u8> {
        if self.target_bps.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let loss_percent = f64::from(self.loss_ppm.load(Ordering::Relaxed)) / 10_000.0;
        Some((loss_percent * 1.25).ceil().min(25.0) as u8)
    }

    /// The pacer holds more than a frame's worth of delay: encoding more would only queue.
    pub fn congested(&self) -> bool {
        u64::from(self.pacer_queue_ms.load(Ordering::Relaxed)) > CONGESTED_QUEUE_MS
    }
}

/// A capture time this far off the audio clock's prediction restarts it.
const CLOCK_JUMP_US: f64 = 100_000.0;

/// Where the audio RTP clock (one tick a sample, from the stream's first timestamp) stands against
/// the capture clock: each packet's capture time, smoothed so the microphone's scheduling jitter
/// does not reach the sender reports, following the device's drift.
#[derive(Debug, Default)]
struct AudioClock {
    /// Ticks since the first timestamp of the next packet.
    ticks: u64,
    /// The smoothed capture time of the packet at `ticks`.
    capture_us: Option<f64>,
}

impl AudioClock {
    /// A packet of `samples` whose first one was captured at `first_us` (0: unknown) goes out;
    /// returns its timestamp (ticks since the first packet's) and the anchor for it.
    fn packet(&mut self, samples: u64, first_us: u64) -> (u64, Option<Anchor>) {
        let ticks = self.ticks;
        self.ticks += samples;
        let sample_us = samples as f64 * 1e6 / f64::from(confab_media::SAMPLE_RATE_HZ);
        if first_us == 0 {
            self.capture_us = self.capture_us.map(|c| c + sample_us);
            return (ticks, None);
        }
        let measured = first_us as f64;
        let smoothed = match self.capture_us {
            // A jump (the source restarted): start again from it.
            Some(predicted) if (measured - predicted).abs() < CLOCK_JUMP_US => {
                predicted + (measured - predicted) / 16.0
            }
            _ => measured,
        };
        self.capture_us = Some(smoothed + sample_us);
        let anchor = Anchor {
            ticks: ticks as i64,
            capture_us: smoothed,
        };
        (ticks, Some(anchor))
    }
}

/// Opus at 32 kbit/s in 20 ms packets plus RTP/UDP/IP and SRTP overhead (50 packets/s).
const AUDIO_RESERVE_BPS: u64 = 56_000;
/// The same in 10 ms packets (100 packets/s, ~58 bytes of headers each).
const AUDIO_RESERVE_SHORT_BPS: u64 = 80_000;
/// Audio goes in 10 ms packets from this target up; below it, in 20 ms packets.
const SHORT_AUDIO_MIN_BPS: u64 = 1_200_000;
/// The share of the target the encoder aims for: the rest covers packet headers, retransmissions
/// and the encoder's own overshoot.
const VIDEO_SHARE: f64 = 0.9;
/// Pacer backlog beyond which frames are skipped before encoding.
const CONGESTED_QUEUE_MS: u64 = 150;
/// Keyframes at most this often, however many receivers ask (a keyframe costs several frames);
/// libwebrtc's sender holds off for the same 300 ms.
const KEYFRAME_MIN_GAP: Duration = Duration::from_millis(300);
/// The smallest bitrate change worth telling the encoder about.
const RETUNE_RATIO: f64 = 0.1;
/// The least a rung held down by a cap is given (`VideoSender::encoder_bps`): what the codec's
/// default gives the smallest pictures (180p20 scaled from 720p30 would be 80 kbit/s, which
/// blurs its motion).
const CAPPED_RUNG_MIN_BPS: u32 = 150_000;

/// Encodes one source: picks the rung of the ladder the network allows, thins and scales frames
/// to it, keeps the encoder's bitrate on the target, and times the RTP clock by capture time.
struct VideoSender {
    settings: EncoderSettings,
    ladder: Ladder,
    gate: FrameGate,
    encoder: Option<H264Encoder>,
    /// What the last encoder learned of the content, for the next (`DeblockingPolicy`).
    deblocking: DeblockingPolicy,
    /// Whether this computer keeps up with the rung (`thread_load`).
    load: ThreadLoad,
    /// Test hook: a 720p frame takes this much longer to encode (in proportion to its pixels),
    /// as on a slower computer.
    slow_encoder: Duration,
    /// What the receiver last asked for at most, in pixels a second (0: nothing).
    receiver_limit: u64,
}

/// The picture the test hook's `slow_encoder` is for: a frame of this many pixels takes it.
const SLOW_ENCODER_PIXELS: f64 = 1280.0 * 720.0;

impl VideoSender {
    fn new(settings: EncoderSettings, first: &VideoFrame, slow_encoder: Duration) -> Self {
        let rungs: &[Rung] = if settings.screen {
            &ladder::SCREEN
        } else {
            &ladder::CAMERA
        };
        Self {
            settings,
            ladder: Ladder::new(
                rungs,
                (first.width, first.height),
                settings.max_fps.round() as u32,
            ),
            gate: FrameGate::default(),
            encoder: None,
            deblocking: DeblockingPolicy::new(),
            load: ThreadLoad::default(),
            slow_encoder,
            receiver_limit: 0,
        }
    }

    fn drop_encoder(&mut self) {
        if let Some(encoder) = self.encoder.take() {
            self.deblocking = encoder.policy().clone();
        }
    }

    /// The bitrate for the encoder: the network's share for video, never above what was asked
    /// for (`--video-bitrate` or the default for the size), never below 50 kbit/s.
    fn budget(&self, rate: &BweShared) -> u32 {
        rate.video_bps()
            .map_or(self.settings.bitrate_bps, |bps| {
                bps.min(self.settings.bitrate_bps)
            })
            .max(50_000)
    }

    /// What the encoder is given of `budget`. While a cap (this computer's processor, or what the
    /// receiver asked for) holds the picture below what the link carries, the rung gets the call's
    /// bitrate scaled to its pixels a second, as many bits a pixel as the top rung, and no more:
    /// the link's whole share went into a small picture nobody asked to be sharper (180p20 of a
    /// minimized window took ~0.4 Mbit/s of a 2 Mbit/s link), and every extra bit is work for the
    /// processor that asked for less. Not while the link holds the picture down: there the
    /// encoder fills what the link carries, which is how the estimate learns the link.
    fn encoder_bps(&self, budget: u32) -> u32 {
        match self.ladder.limitation() {
            Limitation::Cpu | Limitation::Receiver => {
                let share = f64::from(self.settings.bitrate_bps) * self.ladder.pixel_share();
                budget.min((share as u32).max(CAPPED_RUNG_MIN_BPS))
            }
            Limitation::None | Limitation::Bandwidth => budget,
        }
    }

    /// The next frame starts a new encoder, with a keyframe.
    fn starting_over(&self) -> bool {
        self.encoder.is_none()
    }

    /// Whether to skip the next frame before encoding it: the writer still holds every slot, or
    /// the pacer a backlog (the next frame references the last one sent, so nothing breaks;
    /// dropping an encoded frame would cost a keyframe). A new encoder's keyframe (a new rung)
    /// goes at once: the pacer puts it in place of the backlog, which it makes useless (after a
    /// sharp drop, seconds of video queued at the old rate).
    fn skips(&self, rate: &BweShared, writer_full: bool) -> bool {
        writer_full || (rate.congested() && !self.starting_over())
    }

    /// Moves along the ladder with the network, for every frame captured (skipped ones too, so
    /// its timers run while the pacer is backed up); a new rung drops the encoder.
    fn follow(&mut self, rate: &BweShared, keyframes: &KeyframeLimiter) {
        let now = Instant::now();
        let limit = rate.receiver_max_pixel_rate.load(Ordering::Relaxed);
        if limit != self.receiver_limit {
            self.receiver_limit = limit;
            tracing::info!(
                max_pixel_rate = limit,
                "the receiver asks for {}",
                if limit == 0 {
                    "all the video again"
                } else {
                    "less video"
                }
            );
            self.ladder.set_receiver_limit((limit > 0).then_some(limit));
        }
        let budget = self.budget(rate);
        let Some(rung) = self.ladder.update(budget, now, keyframes.due(now)) else {
            return;
        };
        tracing::info!(
            width = rung.width,
            height = rung.height,
            fps = rung.fps,
            budget,
            limitation = ?self.ladder.limitation(),
            "video rung"
        );
        self.load.restart(now);
        // A new size needs a new encoder (and so a keyframe); a new frame rate, new settings.
        self.drop_encoder();
    }

    /// Encodes `frame` at the current rung if its frame rate lets it through; `None` when it is
    /// thinned out or the encoder skipped it. The duration it returns is the rung's frame
    /// interval (the RTP clock turns it into the real one) and the frame's capture time. What
    /// the frame took (scaling and encoding) counts towards the processor's load.
    fn encode(
        &mut self,
        frame: VideoFrame,
        rate: &BweShared,
        keyframes: &mut KeyframeLimiter,
        stats: &StatsHandle,
    ) -> Result<Option<(Encoded, u64)>, CodecError> {
        let started = Instant::now();
        let encoded = self.encode_frame(frame, rate, keyframes, stats);
        let now = Instant::now();
        let window = self
            .load
            .record(now - started, now, self.ladder.cpu_up_ratio());
        if let Some(Window { load, verdict, .. }) = window {
            stats.lock().stats.video_send.encoder_load = load;
            let rung = self.ladder.current();
            match verdict {
                Some(Verdict::Down) if self.ladder.cpu_down() => tracing::info!(
                    load,
                    width = rung.width,
                    height = rung.height,
                    "this computer does not keep up with the video: a rung lower"
                ),
                Some(Verdict::Up) => {
                    self.ladder.cpu_up();
                    tracing::info!(load, "this computer would keep up with a larger picture");
                }
                _ => {}
            }
        }
        encoded
    }

    fn encode_frame(
        &mut self,
        frame: VideoFrame,
        rate: &BweShared,
        keyframes: &mut KeyframeLimiter,
        stats: &StatsHandle,
    ) -> Result<Option<(Encoded, u64)>, CodecError> {
        let now = Instant::now();
        let budget = self.budget(rate);
        let bps = self.encoder_bps(budget);
        let rung = self.ladder.current();
        if !self.gate.admit(frame.capture_ts_us, rung.fps) {
            stats.lock().frame_thinned();
            return Ok(None);
        }
        let (w, h) = ladder::send_size(frame.width, frame.height, rung);
        let frame = if (w, h) == (frame.width, frame.height) {
            frame
        } else {
            confab_media::convert::scale(&frame, w, h)
        };
        if let Some(e) = &mut self.encoder {
            let current = f64::from(e.bitrate_bps());
            if (f64::from(bps) - current).abs() > RETUNE_RATIO * current {
                if let Err(err) = e.set_bitrate(bps) {
                    // Not worth losing video over: a new encoder starts at the new bitrate (one
                    // keyframe).
                    tracing::warn!(%err, "a new encoder for the new bitrate");
                    self.drop_encoder();
                }
            }
        }
        let encoder = match &mut self.encoder {
            Some(e) => e,
            None => {
                let settings = EncoderSettings {
                    bitrate_bps: bps,
                    max_fps: rung.fps as f32,
                    screen: self.settings.screen,
                };
                // A fresh encoder starts with a keyframe: that answers any pending request.
                keyframes.sent(now);
                let encoder = H264Encoder::new(settings)?.with_policy(self.deblocking.clone());
                self.encoder.insert(encoder)
            }
        };
        // A keyframe of the encoder's own (a change of deblocking) only while the link has room:
        // the top rung at the bitrate asked for.
        let room = self.ladder.limitation() == Limitation::None
            && f64::from(budget) >= 0.9 * f64::from(self.settings.bitrate_bps);
        encoder.allow_own_keyframes(room);
        if keyframes.take(now) {
            encoder.request_keyframe();
        }
        let at = Instant::now();
        if !self.slow_encoder.is_zero() {
            let pixels = f64::from(frame.width) * f64::from(frame.height);
            std::thread::sleep(self.slow_encoder.mul_f64(pixels / SLOW_ENCODER_PIXELS));
        }
        let Some(encoded) = encoder.encode(&frame)? else {
            // The rate controller skipped it to hold the bitrate.
            stats.lock().frame_skipped_by_encoder();
            return Ok(None);
        };
        {
            // One lock per frame: the playout thread takes this one too.
            let mut c = stats.lock();
            c.frame_encoded(&encoded, at.elapsed(), frame.width, frame.height);
            c.video_target(bps, rung.fps, self.ladder.limitation());
        }
        let frame_interval = Duration::from_secs_f32(1.0 / (rung.fps.max(1) as f32));
        tracing::trace!(
            bytes = encoded.data.len(),
            keyframe = encoded.keyframe,
            "encoded"
        );
        Ok(Some((
            Encoded {
                data: encoded.data,
                duration: frame_interval,
                at,
                ticks: 0,
                anchor: None,
                capture_us: 0,
            },
            frame.capture_ts_us,
        )))
    }
}

/// The video send pipeline and its control channel.
pub struct VideoPipeline {
    pub pipeline: Pipeline,
    /// Bounded: the encode thread reads it before every frame, so a full queue means the person
    /// is clicking faster than frames are made, and the extra command is refused.
    pub control: std::sync::mpsc::SyncSender<VideoControl>,
}

/// Video control commands waiting for the encode thread.
const CONTROL_QUEUE: usize = 8;

/// `rate`: what the network allows (the congestion controller's target, the pacer's backlog),
/// and where the RTP clock's anchor goes (lip sync). `hooks`: the video delay (see
/// `spawn_writer`) and the slow encoder (`VideoSender`).
pub fn start_video(
    initial: Vec<(Box<dyn VideoSource>, EncoderSettings)>,
    out: TrackOut,
    rate: Arc<BweShared>,
    stats: StatsHandle,
    errors: PipelineErrors,
    hooks: TestHooks,
) -> VideoPipeline {
    let stop = Arc::new(AtomicBool::new(false));
    let keyframe = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Encoded>(4);
    let (control, control_rx) = std::sync::mpsc::sync_channel::<VideoControl>(CONTROL_QUEUE);
    spawn_writer(
        out.clone(),
        VIDEO_CLOCK_HZ,
        rx,
        rate.clone(),
        hooks.video_delay,
        None,
    );
    spawn_keyframe_listener(out.track.clone(), keyframe.clone(), stats.clone());
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("video-encode".into())
            .spawn(move || {
                // The sources, newest on top; only the top one is read.
                let mut s = Sources {
                    stack: initial,
                    paused: false,
                    black: None,
                    last_size: (640, 360),
                };
                // What encodes the top source; a new one (a keyframe) when the source changes.
                let mut sender: Option<VideoSender> = None;
                let mut keyframes = KeyframeLimiter::new(KEYFRAME_MIN_GAP);
                // One RTP clock for the track, whichever source feeds it.
                let mut clock = RtpClock::new(VIDEO_CLOCK_HZ);
                while !stop.load(Ordering::Relaxed) {
                    loop {
                        match control_rx.try_recv() {
                            Ok(msg) => {
                                // A new encoder for the new source: it starts with a keyframe
                                // and may use other settings (screen content) or another size.
                                if s.apply(msg) {
                                    sender = None;
                                }
                            }
                            Err(std::sync::mpsc::TryRecvError::Empty) => break,
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                        }
                    }
                    let idle = s.paused && s.black.is_none();
                    let Some((source, settings)) = s.stack.last_mut().filter(|_| !idle) else {
                        match control_rx.recv_timeout(Duration::from_millis(100)) {
                            Ok(msg) => {
                                if s.apply(msg) {
                                    sender = None;
                                }
                            }
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                        continue;
                    };
                    let next = match s.black.take() {
                        Some(frame) => Ok(frame),
                        None => source.next_frame(),
                    };
                    let frame = match next {
                        Ok(frame) => frame,
                        Err(err) => {
                            report(&errors, format!("{} stopped: {err}", source.name()));
                            // Fall back to what was sent before (the camera, after a screen).
                            s.stack.pop();
                            sender = None;
                            continue;
                        }
                    };
                    let settings = *settings;
                    s.last_size = (frame.width, frame.height);
                    stats.lock().frame_captured();
                    if keyframe.swap(false, Ordering::Relaxed) {
                        keyframes.request();
                    }
                    let sender = sender.get_or_insert_with(|| {
                        VideoSender::new(settings, &frame, hooks.slow_encoder)
                    });
                    sender.follow(&rate, &keyframes);
                    if sender.skips(&rate, tx.capacity() == 0) {
                        stats.lock().frame_skipped_congestion();
                        continue;
                    }
                    let encoded = match sender.encode(frame, &rate, &mut keyframes, &stats) {
                        Ok(Some((encoded, capture_us))) => {
                            let (duration, ticks, anchor) =
                                clock.sample(capture_us, encoded.duration);
                            Encoded {
                                duration,
                                ticks,
                                anchor: Some(anchor),
                                ..encoded
                            }
                        }
                        Ok(None) => continue,
                        Err(err) => {
                            report(&errors, format!("video is off: {err}"));
                            return;
                        }
                    };
                    if tx.try_send(encoded).is_err() {
                        // Only this thread sends, and there was room: the writer is gone.
                        stats.lock().frame_dropped_before_send();
                        keyframes.request();
                    }
                }
            })
            .expect("invariant: the OS can start a thread")
    };
    VideoPipeline {
        pipeline: Pipeline {
            stop,
            thread: Some(thread),
        },
        control,
    }
}

/// `rate`: the loss the network reports, which Opus's in-band FEC follows, and where the RTP
/// clock's anchor goes (lip sync). `delay`: a test hook, see `spawn_writer`.
#[allow(clippy::too_many_arguments)]
pub fn start_audio(
    mut source: Box<dyn AudioSource>,
    bitrate_bps: i32,
    muted: Arc<AtomicBool>,
    apm: Option<Arc<AudioProcessor>>,
    out: TrackOut,
    rate: Arc<BweShared>,
    stats: StatsHandle,
    errors: PipelineErrors,
    delay: Duration,
) -> Pipeline {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Encoded>(8);
    spawn_writer(
        out,
        AUDIO_CLOCK_HZ,
        rx,
        rate.clone(),
        delay,
        Some(stats.clone()),
    );
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("audio-send".into())
            .spawn(move || {
                let mut encoder = match OpusEncoder::new(bitrate_bps) {
                    Ok(e) => e,
                    Err(err) => {
                        report(&errors, format!("audio is off: {err}"));
                        return;
                    }
                };
                // 10 ms blocks from the microphone; one or two per packet.
                let mut packet = vec![0f32; FRAME_SAMPLES];
                let mut filled = 0;
                let mut packet_samples = rate.audio_packet_samples();
                let mut expected_loss = Some(DEFAULT_EXPECTED_LOSS_PERCENT);
                stats.lock().stats.audio_send.fec_expected_loss_percent =
                    DEFAULT_EXPECTED_LOSS_PERCENT;
                let mut blocks = 0u64;
                let mut level = LevelMeter::default();
                // What the microphone hears while muted (measured only).
                let mut muted_level: Option<LevelMeter> = None;
                let mut captured_at = Instant::now();
                let mut packet_first_us = 0;
                let mut clock = AudioClock::default();
                let mut markers = MarkerDetector::default();
                while !stop.load(Ordering::Relaxed) {
                    // Once a second: protect against the loss the network reports.
                    if blocks.is_multiple_of(100) {
                        if let Some(percent) = rate.expected_loss_percent() {
                            if expected_loss != Some(percent) {
                                expected_loss = Some(percent);
                                if let Err(err) = encoder.set_expected_loss(percent) {
                                    tracing::warn!(%err, "Opus refused an expected loss");
                                }
                                stats.lock().stats.audio_send.fec_expected_loss_percent = percent;
                            }
                        }
                    }
                    blocks += 1;
                    let block = &mut packet[filled..filled + BLOCK_SAMPLES];
                    let first_us = match source.read(block) {
                        Ok(first_us) => first_us,
                        Err(err) => {
                            report(
                                &errors,
                                format!("audio is off: {} failed: {err}", source.name()),
                            );
                            return;
                        }
                    };
                    if filled == 0 {
                        captured_at = Instant::now();
                        packet_first_us = first_us;
                    }
                    // Echo cancellation, noise suppression, gain control, high-pass.
                    if let Some(apm) = &apm {
                        apm.capture(block);
                    }
                    // What processing does to the test signal's markers: only in that signal
                    // (six Goertzel filters a block are not for a real microphone's sound).
                    if first_us > 0 && source.name() == test_signal::SOURCE_NAME {
                        let found = markers.push(block, first_us);
                        if !found.is_empty() {
                            let mut c = stats.lock();
                            for late_us in found {
                                c.audio_processed(late_us as f64 / 1000.0);
                            }
                        }
                    }
                    if muted.load(Ordering::Relaxed) {
                        muted_level
                            .get_or_insert_with(LevelMeter::default)
                            .push(block);
                        block.fill(0.0);
                    } else {
                        muted_level = None;
                    }
                    filled += BLOCK_SAMPLES;
                    if filled < packet_samples {
                        continue;
                    }
                    let data = match encoder.encode(&packet[..filled]) {
                        Ok(data) => data,
                        Err(err) => {
                            report(&errors, format!("audio is off: {err}"));
                            return;
                        }
                    };
                    let duration = Duration::from_millis(10) * (filled / BLOCK_SAMPLES) as u32;
                    let (ticks, anchor) = clock.packet(filled as u64, packet_first_us);
                    let level_dbfs = level.push(&packet[..filled]);
                    filled = 0;
                    // The next packet's length follows the link (between packets only).
                    packet_samples = rate.audio_packet_samples();
                    let mut c = stats.lock();
                    c.audio_encoded();
                    if packet_first_us > 0 {
                        let ms = clock::now_us().saturating_sub(packet_first_us) as f64 / 1000.0;
                        c.audio_captured(ms);
                    }
                    c.stats.audio_send.mic_samples_dropped = source.dropped_samples();
                    c.stats.audio_send.mic_device_ms =
                        source.capture_delay().map(|d| d.as_secs_f64() * 1000.0);
                    c.stats.audio_send.packet_ms = duration.as_secs_f64() * 1000.0;
                    c.stats.audio_send.level_dbfs = Some(level_dbfs);
                    c.stats.audio_send.muted_level_dbfs = muted_level.map(|m| m.level());
                    if let Some(apm) = apm.as_ref().filter(|_| blocks.is_multiple_of(100)) {
                        let (erle, delay) = apm.echo_stats();
                        tracing::debug!(?erle, ?delay, "echo canceller");
                        c.stats.audio_send.aec_erle_db = erle;
                        c.stats.audio_send.aec_delay_ms = delay;
                    }
                    drop(c);
                    let item = Encoded {
                        data,
                        duration,
                        at: captured_at,
                        ticks,
                        anchor,
                        capture_us: packet_first_us,
                    };
                    match tx.try_send(item) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            stats.lock().stats.audio_send.frames_dropped += 1;
                            tracing::trace!("dropped an audio frame: the network side is behind");
                        }
                        // The writer is gone: the call is ending.
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
            })
            .expect("invariant: the OS can start a thread")
    };
    Pipeline {
        stop,
        thread: Some(thread),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10 ms audio packet the encoder counted at `ticks`, captured at `capture_us`.
    fn packet(stamps: &mut WrittenStamps, ticks: u64, capture_us: f64) -> Option<Anchor> {
        let anchor = Anchor {
            ticks: ticks as i64,
            capture_us,
        };
        stamps.written(ticks, Duration::from_millis(10), Some(anchor), true)
    }

    #[test]
    fn anchors_follow_the_stamps_written_not_the_frames_dropped_before_them() {
        let mut stamps = WrittenStamps::new(AUDIO_CLOCK_HZ);
        let t0 = 1.7e15;
        // Before the track is bound: stamped, not sent, not counted from.
        let early = Anchor {
            ticks: 0,
            capture_us: t0 - 20e3,
        };
        let ten_ms = Duration::from_millis(10);
        assert_eq!(stamps.written(0, ten_ms, Some(early), false), None);
        assert_eq!(stamps.written(480, ten_ms, Some(early), false), None);
        for n in 0..3u64 {
            let anchor = packet(&mut stamps, 1000 + n * 480, t0 + n as f64 * 10e3);
            assert_eq!(anchor.map(|a| a.ticks), Some(n as i64 * 480));
        }
        // 600 packets (6 s) dropped before the track: the packetizer never saw them, so the next
        // one is stamped right after the last one written, and its capture time goes with that.
        let after = packet(&mut stamps, 1000 + 603 * 480, t0 + 6.03e6).unwrap();
        assert_eq!(after.ticks, 3 * 480);
        assert_eq!(after.capture_us, t0 + 6.03e6);
        // Video: an anchor off its sample's stamp keeps its offset.
        let mut stamps = WrittenStamps::new(VIDEO_CLOCK_HZ);
        let frame = Duration::from_secs_f64(3000.5 / 90_000.0);
        stamps.written(0, frame, None, true);
        let anchor = Anchor {
            ticks: 9010,
            capture_us: t0 + 100_111.0,
        };
        assert_eq!(
            stamps
                .written(9000, frame, Some(anchor), true)
                .unwrap()
                .ticks,
            3010
        );
    }

    #[test]
    fn the_rate_signal_leaves_room_for_audio_and_follows_loss() {
        let rate = BweShared::default();
        assert_eq!(rate.video_bps(), None, "no estimate yet");
        assert_eq!(rate.expected_loss_percent(), None);
        assert_eq!(rate.audio_packet_samples(), 480, "10 ms audio at first");
        rate.target_bps.store(2_000_000, Ordering::Relaxed);
        assert_eq!(rate.video_bps(), Some(1_800_000 - 80_000));
        assert_eq!(rate.audio_packet_samples(), 480);
        rate.target_bps.store(1_000_000, Ordering::Relaxed);
        assert_eq!(rate.video_bps(), Some(900_000 - 56_000));
        assert_eq!(
            rate.audio_packet_samples(),
            960,
            "20 ms audio on a tight link"
        );
        assert_eq!(
            rate.expected_loss_percent(),
            Some(0),
            "no loss, no FEC bits"
        );
        rate.loss_ppm.store(50_000, Ordering::Relaxed); // 5%
        assert_eq!(rate.expected_loss_percent(), Some(7));
        rate.loss_ppm.store(600_000, Ordering::Relaxed);
        assert_eq!(rate.expected_loss_percent(), Some(25), "capped");
        rate.target_bps.store(40_000, Ordering::Relaxed);
        assert_eq!(rate.video_bps(), Some(0), "audio first");
        assert!(!rate.congested());
        rate.pacer_queue_ms.store(400, Ordering::Relaxed);
        assert!(rate.congested());
    }

    #[test]
    fn a_rung_held_down_by_a_cap_gets_its_share_of_the_bitrate_not_the_links() {
        let call_bps = confab_codecs::h264::default_bitrate_bps(1280, 720, 30);
        let new_sender = || {
            let settings = EncoderSettings {
                bitrate_bps: call_bps,
                max_fps: 30.0,
                screen: false,
            };
            VideoSender::new(settings, &VideoFrame::black(1280, 720, 0), Duration::ZERO)
        };
        let rate = BweShared::default();
        let mut keyframes = KeyframeLimiter::new(KEYFRAME_MIN_GAP);
        let stats = StatsHandle::new(Instant::now());
        let mut at_us = 0;
        // Follows the rate and encodes a frame: the rung's height and the encoder's bitrate.
        let mut encode = |sender: &mut VideoSender, rate: &BweShared| {
            sender.follow(rate, &keyframes);
            at_us += 100_000;
            let frame = VideoFrame::black(1280, 720, at_us);
            sender
                .encode(frame, rate, &mut keyframes, &stats)
                .expect("encodes");
            let encoder = sender.encoder.as_ref().expect("an encoder");
            (sender.ladder.current().height, encoder.bitrate_bps())
        };
        let mut sender = new_sender();
        rate.target_bps.store(2_500_000, Ordering::Relaxed);
        assert_eq!(encode(&mut sender, &rate), (720, call_bps), "the call's");
        // The receiver asks for 360p30: a quarter of the pixels, a quarter of the bits, though
        // the link carries 2 Mbit/s.
        rate.set_receiver_limit(Some(640 * 360 * 30));
        assert_eq!(encode(&mut sender, &rate), (360, call_bps / 4));
        assert_eq!(sender.ladder.limitation(), Limitation::Receiver);
        // A link that carries less than that share is what holds the encoder.
        rate.target_bps.store(400_000, Ordering::Relaxed);
        let link = rate.video_bps().expect("an estimate");
        assert!(link < call_bps / 4);
        assert_eq!(encode(&mut sender, &rate), (360, link));
        // The least (a minimized window): 180p20, 1/24 of the call's bitrate (80 kbit/s) raised
        // to the floor.
        rate.target_bps.store(2_500_000, Ordering::Relaxed);
        rate.set_receiver_limit(Some(0));
        assert_eq!(encode(&mut sender, &rate), (180, CAPPED_RUNG_MIN_BPS));
        assert_eq!(stats.lock().stats.video_send.target_kbps, 150.0);

        // The same rung held down by the link alone gets the link's whole share, to fill and
        // probe: the link drops far below 720p (360p at once), then carries more, and the ladder
        // waits before it steps up.
        let rate = BweShared::default();
        let mut sender = new_sender();
        rate.target_bps.store(2_500_000, Ordering::Relaxed);
        encode(&mut sender, &rate);
        rate.target_bps.store(500_000, Ordering::Relaxed);
        assert_eq!(encode(&mut sender, &rate).0, 360);
        rate.target_bps.store(1_200_000, Ordering::Relaxed);
        let link = rate.video_bps().expect("an estimate");
        assert!(link > call_bps / 4);
        assert_eq!(encode(&mut sender, &rate), (360, link));
        assert_eq!(sender.ladder.limitation(), Limitation::Bandwidth);
    }

    #[test]
    fn the_ladder_follows_a_drop_while_frames_are_skipped_and_starts_over_at_once() {
        let first = VideoFrame::black(1280, 720, 0);
        let settings = EncoderSettings {
            bitrate_bps: confab_codecs::h264::default_bitrate_bps(1280, 720, 30),
            max_fps: 30.0,
            screen: false,
        };
        let mut sender = VideoSender::new(settings, &first, Duration::ZERO);
        let rate = BweShared::default();
        rate.target_bps.store(2_500_000, Ordering::Relaxed);
        let mut keyframes = KeyframeLimiter::new(KEYFRAME_MIN_GAP);
        let stats = StatsHandle::new(Instant::now());
        sender.follow(&rate, &keyframes);
        assert!(sender.starting_over(), "no encoder before the first frame");
        let encoded = sender
            .encode(first, &rate, &mut keyframes, &stats)
            .expect("encodes");
        assert!(encoded.is_some_and(|(e, _)| !e.data.is_empty()));
        assert!(!sender.starting_over());
        // The pacer backs up at the same rate: frames are skipped before `encode`.
        rate.pacer_queue_ms.store(2_000, Ordering::Relaxed);
        sender.follow(&rate, &keyframes);
        assert!(sender.skips(&rate, false));
        // The link collapses: the ladder still hears of it, and the new rung's encoder is not
        // skipped (unless the writer has no room at all).
        rate.target_bps.store(300_000, Ordering::Relaxed);
        sender.follow(&rate, &keyframes);
        assert!(sender.starting_over());
        assert!(!sender.skips(&rate, false));
        assert!(sender.skips(&rate, true));
        assert_eq!(sender.ladder.current().height, 270);
        let later = VideoFrame::black(1280, 720, 100_000);
        let (encoded, _) = sender
            .encode(later, &rate, &mut keyframes, &stats)
            .expect("encodes")
            .expect("not thinned");
        let idr = encoded
            .data
            .windows(4)
            .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1F == 5);
        assert!(idr, "the new rung starts with a keyframe");
    }

    /// A source that only has a name (the stack's logic never reads it here).
    struct Named(&'static str);

    impl VideoSource for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn next_frame(&mut self) -> Result<VideoFrame, confab_media::CaptureError> {
            Ok(VideoFrame::black(2, 2, 0))
        }
    }

    fn sources(stack: &[(&'static str, bool)]) -> Sources {
        Sources {
            stack: stack
                .iter()
                .map(|&(name, screen)| {
                    let settings = EncoderSettings {
                        bitrate_bps: 1,
                        max_fps: 30.0,
                        screen,
                    };
                    (Box::new(Named(name)) as Box<dyn VideoSource>, settings)
                })
                .collect(),
            paused: false,
            black: None,
            last_size: (640, 360),
        }
    }

    fn names(s: &Sources) -> Vec<&str> {
        s.stack.iter().map(|(source, _)| source.name()).collect()
    }

    fn camera(name: &'static str) -> VideoControl {
        let settings = EncoderSettings {
            bitrate_bps: 1,
            max_fps: 30.0,
            screen: false,
        };
        VideoControl::Camera(Box::new(Named(name)), settings)
    }

    #[test]
    fn another_camera_replaces_the_camera_and_stop_sharing_returns_to_it() {
        // Sending from the camera: the new one is read at once.
        let mut s = sources(&[("old", false)]);
        assert!(s.apply(camera("new")), "the source read from changed");
        assert_eq!(names(&s), ["new"]);
        // Sharing a screen: the screen stays on top, the new camera waits under it.
        let mut s = sources(&[("old", false), ("screen", true)]);
        assert!(!s.apply(camera("new")), "the screen is still what is sent");
        assert_eq!(names(&s), ["new", "screen"]);
        assert!(s.apply(VideoControl::Pop));
        assert_eq!(names(&s), ["new"], "stop sharing returns to the new camera");
        // Sharing without a camera, or nothing at all: the camera goes at the bottom.
        let mut s = sources(&[("screen", true)]);
        assert!(!s.apply(camera("new")));
        assert_eq!(names(&s), ["new", "screen"]);
        let mut s = sources(&[]);
        assert!(s.apply(camera("new")));
        assert_eq!(names(&s), ["new"]);
        // Camera off stays off.
        let mut s = sources(&[("old", false)]);
        s.apply(VideoControl::Paused(true));
        s.apply(camera("new"));
        assert!(s.paused, "still off");
        assert_eq!(names(&s), ["new"]);
    }

    #[test]
    fn rtp_time_goes_on_when_another_microphone_takes_over() {
        let mut clock = AudioClock::default();
        assert_eq!(clock.packet(480, 1_000_000).0, 0);
        assert_eq!(clock.packet(480, 1_010_000).0, 480);
        // A new device whose first block was captured well after the old one's last.
        let (ticks, anchor) = clock.packet(480, 1_400_000);
        assert_eq!(ticks, 960, "timestamps count samples: no jump");
        let anchor = anchor.expect("a capture time was given");
        assert_eq!(anchor.ticks, 960);
        assert_eq!(
            anchor.capture_us, 1_400_000.0,
            "lip sync follows the new device's capture times"
        );
    }
}
