//! The receive pipelines. Video: a task reads RTP from the remote track into the frame assembler
//! (asking for keyframes with PLI when it must), and a named thread decodes complete frames and
//! hands them to the `VideoOut`. Audio: a task fills the audio jitter buffer, and a named thread
//! plays one frame (10 or 20 ms, as the sender packs them) at a time (decoded, recovered from FEC, or concealed) into the sink,
//! whenever a device sink has room (its clock sets the pace) or every 20 ms for a file or nothing.
//! Lip sync (`sync::LipSync`, from the sender reports): a decoded video frame waits in a short
//! queue while audio of its capture instant has not played yet; late video makes audio wait. On a
//! lossy link frames also wait a round trip for resends (`video_delay::VideoDelay`). The decode
//! thread measures its own load; when it cannot keep up it asks the sender for less video
//! (`thread_load::DecoderAsk`, published in `BweShared::decoder_asks_pixel_rate`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::audio_jitter::{AudioJitterBuffer, Playout};
use super::bwe::BweShared;
use super::collector::{StampReader, StatsHandle};
use super::frame_assembler::{AssembledFrame, Event, FrameAssembler, RtpIn};
use super::media_engine::TestHooks;
use super::sync::{LipSync, AUDIO_CLOCK_HZ, MAX_DELAY, VIDEO_CLOCK_HZ};
use super::thread_load::DecoderAsk;
use super::video_delay::VideoDelay;
use confab_codecs::apm::AudioProcessor;
use confab_codecs::h264::H264Decoder;
use confab_codecs::opus::OpusDecoder;
use confab_media::audio::{LevelMeter, BLOCK_SAMPLES, FRAME_SAMPLES};
use confab_media::test_signal::MarkerDetector;
use confab_media::{clock, VideoFrame};
use confab_media::{AudioSink, EchoReference, Pacer, Room, VideoOut};

/// Frames waiting for the decoder at most: only a memory bound (4 s at 30 fps). Whether the decoder
/// is behind is judged by how long frames wait for it (`DECODER_BEHIND`), not by how many do: a
/// lossy link releases a burst of frames whenever a resend fills a gap (up to `MAX_WAIT` of
/// frames, 45 at 30 fps). With 8 places, every such burst on a 500 ms round trip overflowed
/// the queue, so frames were dropped and a keyframe asked for that the link could not afford.
const DECODE_QUEUE: usize = 128;
/// A frame that waited longer than this for the decoder means it cannot keep up: frames are
/// dropped until a keyframe (asked for) lets it start afresh, so the picture does not lag ever
/// further behind.
const DECODER_BEHIND: Duration = Duration::from_millis(500);
/// Decoded frames held for lip sync at most (`MAX_DELAY` of 60 fps); when full, the oldest is
/// shown early.
const PRESENT_QUEUE: usize = 30;
/// Opus's encoder lookahead (312 samples at 48 kHz): the audio a packet decodes to was captured
/// this much before the packet's timestamp says.
const OPUS_LOOKAHEAD_US: f64 = 6_500.0;

/// What the receive pipelines need for lip sync: the other side's sender reports (in
/// `BweShared::sync`) and the one `LipSync` both pipelines talk to.
#[derive(Clone)]
pub struct SyncLink {
    pub transport: Arc<BweShared>,
    pub lip: Arc<Mutex<LipSync>>,
}

impl SyncLink {
    fn lip(&self) -> std::sync::MutexGuard<'_, LipSync> {
        self.lip.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `transport`: its round trip sets how long a gap waits for NACK, and the assembler's progress is
/// published there so that NACK stops asking for what was given up.
/// Returns the decode thread, which ends soon after `stop` is set. `hooks`: a slower decoder, and
/// one that never asks for less (see `TestHooks`).
pub fn spawn_video(
    track: Arc<dyn TrackRemote>,
    out: Arc<dyn VideoOut>,
    stats: StatsHandle,
    transport: Arc<BweShared>,
    sync: Option<SyncLink>,
    stop: Arc<AtomicBool>,
    hooks: TestHooks,
) -> Option<JoinHandle<()>> {
    let (frame_tx, frame_rx) = sync_channel::<Queued>(DECODE_QUEUE);
    let need_keyframe = Arc::new(AtomicBool::new(false));
    // Complete frames that came off the network, for the decoder's load: its rate is what the
    // sender sends, however the decoder's queue bunches them up.
    let arrived = Arc::new(AtomicU64::new(0));
    let decoder = {
        let (stats, need_keyframe, stop) = (stats.clone(), need_keyframe.clone(), stop.clone());
        let arrived = arrived.clone();
        let transport = transport.clone();
        let spawned = std::thread::Builder::new()
            .name("video-decode".into())
            .spawn(move || {
                let decode = Decode {
                    need_keyframe,
                    arrived,
                    transport,
                    sync,
                    slow: hooks.slow_decoder,
                    asks: !hooks.no_video_limit,
                };
                decode_loop(frame_rx, out, stats, decode, stop)
            });
        match spawned {
            Ok(thread) => thread,
            Err(err) => {
                tracing::error!(%err, "cannot start the video decoder thread");
                return None;
            }
        }
    };
    tokio::spawn(async move {
        // The SSRC keyframe requests name: the one the packets carry.
        let mut media_ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
        let mut assembler = FrameAssembler::new();
        let mut plis_sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            let events = tokio::select! {
                event = track.poll() => match event {
                    Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                        media_ssrc = packet.header.ssrc;
                        assembler.push(
                        RtpIn {
                            seq: packet.header.sequence_number,
                            timestamp: packet.header.timestamp,
                            marker: packet.header.marker,
                            payload: packet.payload,
                        },
                        Instant::now(),
                    )
                    }
                    Some(TrackRemoteEvent::OnEnded) | None => break,
                    Some(_) => continue,
                },
                _ = tick.tick() => {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(rtt) = transport.rtt() {
                        assembler.set_rtt(rtt);
                    }
                    if need_keyframe.swap(false, Ordering::Relaxed) {
                        // Through the assembler, which rate-limits requests.
                        assembler.request_keyframe();
                    }
                    let events = assembler.poll(Instant::now());
                    let s = assembler.stats();
                    let mut c = stats.lock();
                    c.stats.video_recv.frames_dropped = s.frames_dropped;
                    c.stats.video_recv.keyframe_requests_sent = plis_sent;
                    c.stats.video_recv.packets_late = s.late;
                    c.stats.sync.sender_reports =
                        transport.sync.reports_received.load(Ordering::Relaxed);
                    events
                }
            };
            if let Some(seq) = assembler.played_seq() {
                transport.receive_horizon.set(media_ssrc, seq);
            }
            for event in events {
                match event {
                    Event::Frame(frame) => {
                        arrived.fetch_add(1, Ordering::Relaxed);
                        stats.lock().video_frame_received(
                            frame.au.annexb.len(),
                            frame.first_arrival.elapsed(),
                        );
                        match frame_tx.try_send(Queued {
                            frame,
                            ssrc: media_ssrc,
                            at: Instant::now(),
                        }) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => {
                                stats.lock().stats.video_recv.frames_dropped_decoder_behind += 1;
                                need_keyframe.store(true, Ordering::Relaxed)
                            }
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                    Event::KeyframeNeeded => {
                        plis_sent += 1;
                        let s = assembler.stats();
                        tracing::debug!(
                            frames_dropped = s.frames_dropped,
                            frames = s.frames,
                            "asking for a keyframe"
                        );
                        let pli = PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc,
                        };
                        if let Err(err) = track.write_rtcp(vec![Box::new(pli)]).await {
                            tracing::debug!(%err, "could not send a PLI");
                        }
                    }
                }
            }
        }
    });
    Some(decoder)
}

/// A frame for the decoder: from which SSRC, and when it was queued.
struct Queued {
    frame: AssembledFrame,
    ssrc: u32,
    at: Instant,
}

/// Whether the decoder keeps up, from how long each frame waited for it (see `DECODER_BEHIND`).
#[derive(Debug, Default)]
struct Backlog {
    /// Frames are being dropped until the next keyframe.
    skipping: bool,
}

impl Backlog {
    /// Whether to decode a frame that waited `queued`. `Err(true)`: drop it, the decoder has
    /// just fallen behind (ask for a keyframe); `Err(false)`: drop it, still waiting for one.
    fn admit(&mut self, queued: Duration, keyframe: bool) -> Result<(), bool> {
        if keyframe {
            self.skipping = false;
            return Ok(());
        }
        if self.skipping {
            return Err(false);
        }
        if queued > DECODER_BEHIND {
            self.skipping = true;
            return Err(true);
        }
        Ok(())
    }
}

/// A decoded frame waiting for its audio.
struct Held {
    due: Instant,
    picture: VideoFrame,
    decode: Duration,
}

/// Shows `picture`: stamps it with the time it is shown, measures it and hands it out.
fn present(
    picture: VideoFrame,
    decode: Duration,
    out: &dyn VideoOut,
    (stats, stamps): (&StatsHandle, &mut StampReader),
) {
    let picture = VideoFrame {
        capture_ts_us: clock::now_us(),
        ..picture
    };
    let reading = stamps.read(&picture);
    stats.lock().frame_decoded(&picture, decode, reading);
    out.frame(&picture);
}

/// What the decode thread shares with the rest of the call.
struct Decode {
    /// Set to have the receive task ask for a keyframe.
    need_keyframe: Arc<AtomicBool>,
    /// Complete frames the receive task assembled (taken as they are counted).
    arrived: Arc<AtomicU64>,
    /// Its round trip is what a lossy link's frames wait for (`VideoDelay`); what the decoder
    /// asks of the sender goes there too.
    transport: Arc<BweShared>,
    sync: Option<SyncLink>,
    /// Test hook: a 720p frame takes this much longer (see `spawn_video`).
    slow: Duration,
    /// Whether what the decoder would ask for is published (off: a test hook).
    asks: bool,
}

/// The picture the test hook's `slow` is for: a frame of this many pixels takes it.
const SLOW_DECODER_PIXELS: f64 = 1280.0 * 720.0;

fn decode_loop(
    frames: Receiver<Queued>,
    out: Arc<dyn VideoOut>,
    stats: StatsHandle,
    decode: Decode,
    stop: Arc<AtomicBool>,
) {
    let Decode {
        need_keyframe,
        arrived,
        transport,
        sync,
        slow,
        asks,
    } = decode;
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(err) => {
            tracing::error!(%err, "remote video cannot be shown");
            return;
        }
    };
    stats.lock().stats.video_recv.decoder = decoder.name().to_string();
    let mut held: VecDeque<Held> = VecDeque::with_capacity(PRESENT_QUEUE);
    let mut stamps = StampReader::default();
    let mut playout_delay = VideoDelay::default();
    let mut backlog = Backlog::default();
    // The thread's load: since the last decoded frame, the time it waited for frames.
    let mut ask = DecoderAsk::default();
    let (mut since, mut idle) = (Instant::now(), Duration::ZERO);
    loop {
        let now = Instant::now();
        while held.front().is_some_and(|h| h.due <= now) {
            let h = held.pop_front().expect("invariant: front() was Some");
            present(h.picture, h.decode, out.as_ref(), (&stats, &mut stamps));
        }
        // A timeout so that `stop` is seen even when the receive task can no longer run, and
        // held frames are shown when due.
        let wait = held.front().map_or(Duration::from_millis(100), |h| {
            h.due.saturating_duration_since(now)
        });
        let waited = Instant::now();
        let received = frames.recv_timeout(wait);
        idle += waited.elapsed();
        let Queued { frame, ssrc, at } = match received {
            Ok(queued) => queued,
            Err(RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Err(fell_behind) = backlog.admit(at.elapsed(), frame.au.keyframe) {
            stats.lock().stats.video_recv.frames_dropped_decoder_behind += 1;
            if fell_behind {
                tracing::debug!(waited = ?at.elapsed(), "the decoder fell behind; asking for a keyframe");
                need_keyframe.store(true, Ordering::Relaxed);
            }
            continue;
        }
        let started = Instant::now();
        match decoder.decode(&frame.au.annexb) {
            Ok(Some(picture)) => {
                let pixels = u64::from(picture.width) * u64::from(picture.height);
                if !slow.is_zero() {
                    std::thread::sleep(slow.mul_f64(pixels as f64 / SLOW_DECODER_PIXELS));
                }
                let decode = started.elapsed();
                let now = Instant::now();
                let busy = now.saturating_duration_since(since).saturating_sub(idle);
                let came = arrived.swap(0, Ordering::Relaxed).min(u64::from(u32::MAX)) as u32;
                if let Some(window) = ask.frame(pixels, came, busy, now) {
                    let asked = ask.asked().filter(|_| asks).unwrap_or(0);
                    let before = transport
                        .decoder_asks_pixel_rate
                        .swap(asked, Ordering::Relaxed);
                    if asked != before {
                        tracing::info!(
                            load = window.load,
                            max_pixel_rate = asked,
                            "this computer's decoder {}",
                            if asked == 0 {
                                "would keep up with all the video again"
                            } else {
                                "does not keep up: asking the sender for less video"
                            }
                        );
                    }
                    let mut c = stats.lock();
                    c.stats.video_recv.decoder_load = window.load;
                    c.stats.video_recv.asked_max_pixel_rate = asked;
                }
                (since, idle) = (now, Duration::ZERO);
                tracing::trace!(rtp_timestamp = frame.rtp_timestamp, "decoded");
                // First the wait for resends (on a lossy link), then lip sync, which sees the
                // frame when it will be shown.
                let now = clock::now_us();
                let rtt = transport.rtt();
                let playout = playout_delay.frame(frame.rtp_timestamp, now, frame.gap_wait, rtt);
                let lip_sync = sync.as_ref().map(|sync| {
                    let capture =
                        sync.transport
                            .sync
                            .capture_us(ssrc, frame.rtp_timestamp, VIDEO_CLOCK_HZ);
                    let mut lip = sync.lip();
                    let hold = capture.map_or(Duration::ZERO, |capture| {
                        lip.video_ready(capture, now + playout.as_micros() as u64)
                    });
                    let skew = lip.skew_ms().map(|s| s + hold.as_secs_f64() * 1000.0);
                    (hold, skew)
                });
                let mut c = stats.lock();
                c.stats.video_recv.resend_delay_ms =
                    playout_delay.extra(rtt).as_secs_f64() * 1000.0;
                if let Some((hold, skew)) = lip_sync {
                    c.video_held(hold, skew);
                }
                drop(c);
                let lip_hold = lip_sync.map_or(Duration::ZERO, |(hold, _)| hold);
                let hold = (playout + lip_hold).min(MAX_DELAY);
                if hold.is_zero() && held.is_empty() {
                    present(picture, decode, out.as_ref(), (&stats, &mut stamps));
                    continue;
                }
                if held.len() == PRESENT_QUEUE {
                    let h = held.pop_front().expect("invariant: the queue is full");
                    stats.lock().video_shown_early();
                    present(h.picture, h.decode, out.as_ref(), (&stats, &mut stamps));
                }
                held.push_back(Held {
                    due: Instant::now() + hold,
                    picture,
                    decode,
                });
            }
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(%err, bytes = frame.au.annexb.len(), keyframe = frame.au.keyframe, head = ?&frame.au.annexb[..frame.au.annexb.len().min(24)], "decode failed; asking for a keyframe");
                stats.lock().stats.video_recv.frames_undecodable += 1;
                need_keyframe.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Feeds what the speaker plays to `apm` (its far end), in the 10 ms blocks it takes.
fn echo_reference(apm: Arc<AudioProcessor>) -> EchoReference {
    let mut pending: Vec<f32> = Vec::with_capacity(4 * BLOCK_SAMPLES);
    Box::new(move |samples| {
        pending.extend_from_slice(samples);
        let whole = pending.len() / BLOCK_SAMPLES * BLOCK_SAMPLES;
        apm.render_in_place(&mut pending[..whole]);
        pending.drain(..whole);
    })
}

/// How long one wait for the sink's room lasts before `stop` is looked at again.
const ROOM_WAIT: Duration = Duration::from_millis(50);

/// `apm`: the call's echo canceller, told about everything played (its far end): by the sink when
/// it knows what the device really plays, otherwise as written.
/// Returns the playout thread, which finishes the sink and ends soon after `stop` is set.
pub fn spawn_audio(
    track: Arc<dyn TrackRemote>,
    sink: Box<dyn AudioSink>,
    apm: Option<Arc<AudioProcessor>>,
    stats: StatsHandle,
    sync: Option<SyncLink>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let jitter = Arc::new(Mutex::new(AudioJitterBuffer::new()));
    // The SSRC the packets carry, + 1 (0: none yet), for the sender reports.
    let ssrc = Arc::new(AtomicU64::new(0));
    let transport = sync.as_ref().map(|link| link.transport.clone());
    let stats_rx = stats.clone();
    let playout = {
        let (jitter, stats, stop, ssrc) =
            (jitter.clone(), stats.clone(), stop.clone(), ssrc.clone());
        let sync = sync.map(|link| AudioSync { link, ssrc });
        let spawned = std::thread::Builder::new()
            .name("audio-playout".into())
            .spawn(move || run_playout_synced(&jitter, sink, apm, &stats, sync, &stop));
        match spawned {
            Ok(thread) => thread,
            Err(err) => {
                tracing::error!(%err, "cannot start the audio playout thread");
                return None;
            }
        }
    };
    tokio::spawn(async move {
        while let Some(event) = track.poll().await {
            match event {
                TrackRemoteEvent::OnRtpPacket(packet) => {
                    let (packet_ssrc, timestamp) = (packet.header.ssrc, packet.header.timestamp);
                    ssrc.store(u64::from(packet_ssrc) + 1, Ordering::Relaxed);
                    jitter.lock().unwrap_or_else(|p| p.into_inner()).push(
                        timestamp,
                        packet.payload,
                        Instant::now(),
                    );
                    // Capture to arrival, by the sender's reports.
                    if let Some(capture) = transport.as_ref().and_then(|transport| {
                        transport
                            .sync
                            .capture_us(packet_ssrc, timestamp, AUDIO_CLOCK_HZ)
                    }) {
                        let ms = (clock::now_us() as f64 - capture) / 1000.0;
                        stats_rx.lock().audio_arrived(ms);
                    }
                }
                TrackRemoteEvent::OnEnded => break,
                _ => {}
            }
        }
    });
    Some(playout)
}

/// The audio playout loop, on the caller's thread: whenever `sink` has room for the next frame (a
/// device: its clock sets the pace, so nothing piles up in front of it) or once the last frame's
/// time has passed by the monotonic clock (a file, nothing), takes the next frame from `jitter` (filled by someone else: the
/// track's packets, or a benchmark's), decodes it and writes it. Counts what it plays and drops
/// into `stats`. Returns when `stop` is set or the sink fails, after finishing the sink.
pub fn run_playout(
    jitter: &Mutex<AudioJitterBuffer>,
    sink: Box<dyn AudioSink>,
    apm: Option<Arc<AudioProcessor>>,
    stats: &StatsHandle,
    stop: &AtomicBool,
) {
    run_playout_synced(jitter, sink, apm, stats, None, stop);
}

/// Lip sync for the playout loop: where the packets' SSRC is published (+ 1, 0: none yet).
struct AudioSync {
    link: SyncLink,
    ssrc: Arc<AtomicU64>,
}

impl AudioSync {
    /// Tells lip sync what was played at `play_us`; returns the delay it asks audio to add, and
    /// how long after its capture (ms) the packet was played.
    fn played(&self, rtp_timestamp: Option<u32>, play_us: u64) -> (Duration, Option<f64>) {
        let ssrc = self.ssrc.load(Ordering::Relaxed);
        let capture = rtp_timestamp.filter(|_| ssrc > 0).and_then(|ts| {
            let ssrc = (ssrc - 1) as u32;
            let capture = self
                .link
                .transport
                .sync
                .capture_us(ssrc, ts, AUDIO_CLOCK_HZ)?;
            // What a packet decodes to started before its timestamp by the encoder's lookahead.
            Some(capture - OPUS_LOOKAHEAD_US)
        });
        let mut lip = self.link.lip();
        if let Some(capture) = capture {
            lip.audio_played(capture, play_us);
        }
        let latency_ms = capture.map(|capture| (play_us as f64 - capture) / 1000.0);
        (lip.audio_delay(), latency_ms)
    }
}

/// `run_playout`, telling lip sync (when given) what it plays and following the delay it asks for.
fn run_playout_synced(
    jitter: &Mutex<AudioJitterBuffer>,
    mut sink: Box<dyn AudioSink>,
    apm: Option<Arc<AudioProcessor>>,
    stats: &StatsHandle,
    sync: Option<AudioSync>,
    stop: &AtomicBool,
) {
    let mut decoder = match OpusDecoder::new() {
        Ok(d) => d,
        Err(err) => {
            tracing::error!(%err, "remote audio cannot be played");
            return;
        }
    };
    let mut far_end = apm.and_then(|apm| sink.set_echo_reference(echo_reference(apm)));
    let mut pacer: Option<Pacer> = None;
    // The longest Opus packet (120 ms).
    let mut pcm = vec![0f32; FRAME_SAMPLES * 6];
    // 10 ms ticks of the monotonic clock the last frame lasted (unclocked sinks).
    let mut owed_ticks = 1;
    let mut markers = MarkerDetector::default();
    let mut level = LevelMeter::default();
    let mut heard_anything = false;
    let mut undecodable = 0u64;
    let mut chunks_dropped = 0u64;
    let mut frames_since_log = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let expected = jitter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_frame_samples();
        match sink.wait_for_room(expected, ROOM_WAIT) {
            Ok(Room::Ready) => {}
            Ok(Room::Full) => continue,
            Ok(Room::Unclocked) => {
                let pacer = pacer.get_or_insert_with(|| Pacer::new(Duration::from_millis(10)));
                for _ in 0..owed_ticks {
                    pacer.wait();
                }
            }
            Err(err) => {
                let speaker = sink.name();
                tracing::warn!(%err, speaker, "the speaker failed; remote audio is off");
                break;
            }
        }
        let (decision, len, played_ts, waited) = {
            let mut jitter = jitter.lock().unwrap_or_else(|p| p.into_inner());
            let decision = jitter.pop(Instant::now());
            let played = matches!(decision, Playout::Packet(_));
            let played_ts = played.then(|| jitter.played_timestamp()).flatten();
            let waited = played.then(|| jitter.played_wait());
            (
                decision,
                jitter.frame_samples().min(pcm.len()),
                played_ts,
                waited,
            )
        };
        let result = match &decision {
            Playout::Silence => {
                pcm[..len].fill(0.0);
                Ok(len)
            }
            Playout::Packet(p) => decoder.decode(p, &mut pcm),
            Playout::Recover(next) => decoder.recover(next, &mut pcm, len),
            Playout::Conceal => decoder.conceal(&mut pcm, len),
        };
        let n = match result {
            Ok(n) => n.min(pcm.len()),
            Err(err) => {
                tracing::debug!(%err, "audio decode failed; concealing");
                undecodable += 1;
                decoder.conceal(&mut pcm, len).unwrap_or(0)
            }
        };
        owed_ticks = n.div_ceil(BLOCK_SAMPLES).max(1);
        let samples = &pcm[..n];
        if let Some(far_end) = &mut far_end {
            far_end(samples);
        }
        // When the person hears it: after what the speaker and its device still hold.
        let speaker_delay = sink.output_delay();
        let play_us = clock::now_us() + speaker_delay.map_or(0, |d| d.as_micros() as u64);
        let (audio_delay, latency_ms) = sync.as_ref().map_or((None, None), |sync| {
            let (delay, latency_ms) = sync.played(played_ts, play_us);
            jitter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_extra_delay(delay);
            (Some(delay), latency_ms)
        });
        let dropped_before = sink.dropped_samples();
        if let Err(err) = sink.write(samples) {
            let speaker = sink.name();
            tracing::warn!(%err, speaker, "the speaker failed; remote audio is off");
            break;
        }
        if sink.dropped_samples() > dropped_before {
            chunks_dropped += 1;
        }
        let s = jitter.lock().unwrap_or_else(|p| p.into_inner()).stats();
        frames_since_log += 1;
        if frames_since_log >= 100 {
            frames_since_log = 0;
            tracing::debug!(
                target_ms = s.target_ms,
                buffered_ms = s.buffered_ms,
                stretched = s.stretched,
                trimmed = s.dropped_for_latency,
                latency_ms,
                "audio playout"
            );
        }
        // Read the test signal's markers before taking the stats lock (the video threads share it).
        let heard = !matches!(decision, Playout::Silence);
        let marker_latencies = if heard {
            markers.push(samples, play_us)
        } else {
            Vec::new()
        };
        let mut c = stats.lock();
        if let Some(delay) = audio_delay {
            c.stats.sync.audio_delay_ms = delay.as_secs_f64() * 1000.0;
        }
        if heard {
            if !heard_anything {
                heard_anything = true;
                c.first_audio();
            }
            for latency in marker_latencies {
                c.audio_latency(latency);
            }
            c.audio_held(s.buffered_ms);
        }
        if let Some(waited) = waited {
            c.audio_packet_played(waited.as_secs_f64() * 1000.0, latency_ms);
        }
        if let Some(delay) = speaker_delay.filter(|_| heard) {
            c.speaker_delay(delay.as_secs_f64() * 1000.0);
        }
        let a = &mut c.stats.audio_recv;
        a.packets_received = s.packets;
        a.frames_decoded = s.played;
        a.frames_recovered_fec = s.recovered;
        a.frames_concealed = s.concealed;
        a.frames_stretched = s.stretched;
        a.jitter_buffer_ms = s.target_ms;
        a.packet_ms = s.frame_ms;
        a.packets_late = s.late;
        a.packets_dropped_overflow = s.dropped_overflow;
        a.frames_dropped_latency = s.dropped_for_latency;
        a.frames_dropped_overflow = chunks_dropped;
        a.speaker_samples_dropped = sink.dropped_samples();
        a.speaker_underrun_samples = sink.underrun_samples();
        a.frames_undecodable = undecodable;
        a.level_dbfs = Some(level.push(samples));
    }
    if let Err(err) = sink.finish() {
        tracing::warn!(%err, "could not finish the audio output");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::CaptureError;

    #[test]
    fn a_burst_is_decoded_and_a_decoder_that_lags_starts_again_at_a_keyframe() {
        let ms = Duration::from_millis;
        let mut backlog = Backlog::default();
        // A resend filled a 1.5 s gap: 45 frames at once, the last waiting ~100 ms to be decoded.
        for i in 0..45 {
            assert_eq!(
                backlog.admit(ms(2 * i), false),
                Ok(()),
                "frame {i} of the burst"
            );
        }
        // Frames that waited longer than `DECODER_BEHIND`: the decoder cannot keep up. The first
        // asks for a keyframe, the rest are dropped until it comes, whatever their wait.
        assert_eq!(backlog.admit(ms(600), false), Err(true));
        assert_eq!(backlog.admit(ms(700), false), Err(false));
        assert_eq!(
            backlog.admit(ms(1), false),
            Err(false),
            "a P frame cannot decode now"
        );
        assert_eq!(
            backlog.admit(ms(650), true),
            Ok(()),
            "the keyframe starts afresh"
        );
        assert_eq!(backlog.admit(ms(1), false), Ok(()));
    }

    /// A sink that answers `wait_for_room` from a script (or not at all: unclocked), logs what
    /// the playout loop does with it, discards every third write, and stops the loop after
    /// `stop_after` writes.
    struct Scripted {
        rooms: Option<Vec<Room>>,
        asked: usize,
        log: Arc<Mutex<Vec<&'static str>>>,
        writes: usize,
        stop_after: usize,
        stop: Arc<AtomicBool>,
        dropped: u64,
    }

    impl AudioSink for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn write(&mut self, samples: &[f32]) -> Result<(), CaptureError> {
            self.log.lock().unwrap().push("write");
            self.writes += 1;
            if self.writes.is_multiple_of(3) {
                self.dropped += samples.len() as u64;
            }
            if self.writes == self.stop_after {
                self.stop.store(true, Ordering::Relaxed);
            }
            Ok(())
        }
        fn wait_for_room(&mut self, _: usize, _: Duration) -> Result<Room, CaptureError> {
            let Some(rooms) = &self.rooms else {
                return Ok(Room::Unclocked);
            };
            let room = rooms[self.asked % rooms.len()];
            self.asked += 1;
            self.log.lock().unwrap().push(match room {
                Room::Ready => "ready",
                Room::Full => "full",
                Room::Unclocked => "unclocked",
            });
            Ok(room)
        }
        fn dropped_samples(&self) -> u64 {
            self.dropped
        }
        fn underrun_samples(&self) -> u64 {
            42
        }
        fn finish(&mut self) -> Result<(), CaptureError> {
            self.log.lock().unwrap().push("finish");
            Ok(())
        }
    }

    fn play(rooms: Option<Vec<Room>>, stop_after: usize) -> (Vec<&'static str>, StatsHandle) {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Scripted {
            rooms,
            asked: 0,
            log: log.clone(),
            writes: 0,
            stop_after,
            stop: stop.clone(),
            dropped: 0,
        };
        let stats = StatsHandle::default();
        let jitter = Mutex::new(AudioJitterBuffer::new());
        run_playout(&jitter, Box::new(sink), None, &stats, &stop);
        let log = log.lock().unwrap().clone();
        (log, stats)
    }

    #[test]
    fn a_device_sink_paces_playout_and_its_drops_are_counted() {
        let (log, stats) = play(Some(vec![Room::Full, Room::Full, Room::Ready]), 9);
        // Written only when the device said it had room, once per room.
        let writes: Vec<usize> = (0..log.len()).filter(|&i| log[i] == "write").collect();
        assert_eq!(writes.len(), 9, "{log:?}");
        assert!(writes.iter().all(|&i| log[i - 1] == "ready"), "{log:?}");
        assert_eq!(log.iter().filter(|&&e| e == "full").count(), 18);
        assert_eq!(log.last(), Some(&"finish"));
        let a = stats.snapshot().audio_recv;
        assert_eq!(a.frames_dropped_overflow, 3);
        // Silence goes out in 10 ms frames until a packet says how long the sender's are.
        assert_eq!(a.speaker_samples_dropped, 3 * BLOCK_SAMPLES as u64);
        assert_eq!(a.speaker_underrun_samples, 42);
    }

    #[test]
    fn a_sink_without_a_clock_is_paced_and_finished() {
        let (log, stats) = play(None, 4);
        assert_eq!(log, ["write", "write", "write", "write", "finish"]);
        assert_eq!(stats.snapshot().audio_recv.frames_dropped_overflow, 1);
    }
}
