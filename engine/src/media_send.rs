//! The send pipelines. Video: a named thread pulls frames from the source, encodes them with
//! openh264 (a keyframe when the receiver asks) and hands them to a tokio task that packetizes them
//! onto the track; a second task listens for keyframe requests. Audio: a thread reads 20 ms blocks,
//! encodes Opus, and a task writes them. Hand-over queues are bounded: when the network side falls
//! behind, frames are dropped (and counted), never queued without end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media::Sample;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

use super::collector::StatsHandle;
use super::keyframe_forwarder::is_keyframe_request;
use confab_codecs::apm::AudioProcessor;
use confab_codecs::h264::{EncoderSettings, H264Encoder};
use confab_codecs::opus::OpusEncoder;
use confab_media::audio::FRAME_SAMPLES;
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
}

fn spawn_writer(out: TrackOut, mut rx: mpsc::Receiver<Encoded>) {
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let sample = Sample {
                data: Bytes::from(e.data),
                duration: e.duration,
                ..Sample::new(e.at)
            };
            if let Err(err) = out
                .track
                .sample_writer(out.ssrc, out.payload_type)
                .write_sample(&sample)
                .await
            {
                tracing::debug!(%err, "could not send a sample");
            }
        }
    });
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
    fn apply(&mut self, msg: VideoControl) {
        match msg {
            VideoControl::Push(source, settings) => self.stack.push((source, settings)),
            VideoControl::Pop => drop(self.stack.pop()),
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
    }
}

/// The video send pipeline and its control channel.
pub struct VideoPipeline {
    pub pipeline: Pipeline,
    pub control: std::sync::mpsc::Sender<VideoControl>,
}

pub fn start_video(
    initial: Vec<(Box<dyn VideoSource>, EncoderSettings)>,
    out: TrackOut,
    stats: StatsHandle,
    errors: PipelineErrors,
) -> VideoPipeline {
    let stop = Arc::new(AtomicBool::new(false));
    let keyframe = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Encoded>(4);
    let (control, control_rx) = std::sync::mpsc::channel::<VideoControl>();
    spawn_writer(out.clone(), rx);
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
                let mut encoder: Option<H264Encoder> = None;
                let mut last_capture: Option<u64> = None;
                while !stop.load(Ordering::Relaxed) {
                    loop {
                        match control_rx.try_recv() {
                            Ok(msg) => {
                                s.apply(msg);
                                // A new encoder for the new source: it starts with a keyframe
                                // and may use other settings (screen content).
                                encoder = None;
                            }
                            Err(std::sync::mpsc::TryRecvError::Empty) => break,
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                        }
                    }
                    let idle = s.paused && s.black.is_none();
                    let Some((source, settings)) = s.stack.last_mut().filter(|_| !idle) else {
                        match control_rx.recv_timeout(Duration::from_millis(100)) {
                            Ok(msg) => s.apply(msg),
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
                            encoder = None;
                            continue;
                        }
                    };
                    let encoder = match &mut encoder {
                        Some(e) => e,
                        None => match H264Encoder::new(*settings) {
                            Ok(e) => encoder.insert(e),
                            Err(err) => {
                                report(&errors, format!("video is off: {err}"));
                                return;
                            }
                        },
                    };
                    s.last_size = (frame.width, frame.height);
                    stats.lock().frame_captured();
                    if keyframe.swap(false, Ordering::Relaxed) {
                        encoder.request_keyframe();
                    }
                    let at = Instant::now();
                    let encoded = match encoder.encode(&frame) {
                        Ok(Some(encoded)) => encoded,
                        Ok(None) => continue,
                        Err(err) => {
                            report(&errors, format!("video is off: {err}"));
                            return;
                        }
                    };
                    stats.lock().frame_encoded(
                        encoded.data.len(),
                        encoded.keyframe,
                        at.elapsed(),
                        frame.width,
                        frame.height,
                    );
                    // RTP time advances by the capture interval, so skipped frames keep the clock.
                    let frame_interval = Duration::from_secs_f32(1.0 / settings.max_fps.max(1.0));
                    let duration = last_capture
                        .map(|prev| Duration::from_micros(frame.capture_ts_us.saturating_sub(prev)))
                        .filter(|d| !d.is_zero() && *d < Duration::from_secs(1))
                        .unwrap_or(frame_interval);
                    last_capture = Some(frame.capture_ts_us);
                    tracing::trace!(bytes = encoded.data.len(), keyframe = encoded.keyframe, head = ?&encoded.data[..encoded.data.len().min(24)], "encoded");
                    let item = Encoded { data: encoded.data, duration, at };
                    if tx.try_send(item).is_err() {
                        stats.lock().frame_dropped_before_send();
                        // The receiver will miss a reference frame: start over from a keyframe.
                        keyframe.store(true, Ordering::Relaxed);
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

pub fn start_audio(
    mut source: Box<dyn AudioSource>,
    bitrate_bps: i32,
    muted: Arc<AtomicBool>,
    apm: Option<Arc<AudioProcessor>>,
    out: TrackOut,
    stats: StatsHandle,
    errors: PipelineErrors,
) -> Pipeline {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Encoded>(8);
    spawn_writer(out, rx);
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
                let mut block = vec![0f32; FRAME_SAMPLES];
                while !stop.load(Ordering::Relaxed) {
                    if let Err(err) = source.read(&mut block) {
                        report(
                            &errors,
                            format!("audio is off: {} failed: {err}", source.name()),
                        );
                        return;
                    }
                    // Echo cancellation, noise suppression, gain control, high-pass.
                    if let Some(apm) = &apm {
                        apm.capture(&mut block);
                    }
                    if muted.load(Ordering::Relaxed) {
                        block.fill(0.0);
                    }
                    let at = Instant::now();
                    let data = match encoder.encode(&block) {
                        Ok(data) => data,
                        Err(err) => {
                            report(&errors, format!("audio is off: {err}"));
                            return;
                        }
                    };
                    let mut c = stats.lock();
                    c.audio_encoded();
                    c.stats.audio_send.mic_samples_dropped = source.dropped_samples();
                    if let Some(apm) = apm
                        .as_ref()
                        .filter(|_| c.stats.audio_send.frames_encoded.is_multiple_of(50))
                    {
                        let (erle, delay) = apm.echo_stats();
                        c.stats.audio_send.aec_erle_db = erle;
                        c.stats.audio_send.aec_delay_ms = delay;
                    }
                    drop(c);
                    let item = Encoded {
                        data,
                        duration: Duration::from_millis(20),
                        at,
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
