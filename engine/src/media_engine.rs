//! Every media thread of one call, owned in one place: the send pipelines (camera or screen ->
//! H.264, microphone -> echo cancellation -> Opus) and the receive pipelines (decode, playout).
//! The session tells it what happened on the connection (connected, a track arrived) and what the
//! person asked for (mute, camera off, share a screen, another microphone, camera or speaker); `stop` (also on drop) ends every thread
//! and waits for it, so when it returns the sinks are finished and recordings are complete.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use confab_codecs::apm::{ApmSettings, AudioProcessor};
use confab_codecs::h264::{default_bitrate_bps, EncoderSettings};
use confab_media::{AudioSink, AudioSource, VideoOut, VideoSource, SCREEN_FPS, SCREEN_MAX_SIZE};
use webrtc::media_stream::track_remote::TrackRemote;

use super::bwe::BweShared;
use super::collector::StatsHandle;
use super::device_swap::{SwapSlot, SwappableMic, SwappableSpeaker};
use super::media_recv::{self, SyncLink};
use super::media_send::{self, Pipeline, PipelineErrors, TrackOut, VideoControl, VideoPipeline};
use super::sync::LipSync;

/// The devices (or their synthetic twins) a call uses; opened by the caller.
pub struct MediaIo {
    pub camera: Option<Box<dyn VideoSource>>,
    pub mic: Option<Box<dyn AudioSource>>,
    /// Taken by the first remote audio track.
    pub speaker: Option<Box<dyn AudioSink>>,
    /// A screen to share from the start (`--screen`), sent instead of the camera.
    pub screen: Option<Box<dyn VideoSource>>,
    pub video_out: Arc<dyn VideoOut>,
}

/// How media is encoded.
#[derive(Debug, Clone, Copy)]
pub struct MediaSettings {
    pub video: EncoderSettings,
    pub audio_bitrate_bps: i32,
    pub apm: ApmSettings,
    pub test: TestHooks,
}

/// Test hooks (hidden `join` flags): one send path made slower, its capture timestamps kept (the
/// lip-sync tests), lip sync turned off (to measure what it does), an encoder or a decoder as
/// slow as a slower computer's (`slow_encoder` or `slow_decoder` more for a 720p frame, in
/// proportion to its pixels), and a decoder that never asks for less video (to measure what
/// asking does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestHooks {
    pub video_delay: Duration,
    pub audio_delay: Duration,
    pub no_lip_sync: bool,
    pub slow_encoder: Duration,
    pub slow_decoder: Duration,
    pub no_video_limit: bool,
}

/// Encoder settings for a shared screen: screen-content mode at its lower frame rate, with the
/// bits a full-HD screen of text needs.
pub fn screen_settings(camera: EncoderSettings) -> EncoderSettings {
    let (w, h) = SCREEN_MAX_SIZE;
    EncoderSettings {
        bitrate_bps: default_bitrate_bps(w, h, SCREEN_FPS).max(camera.bitrate_bps),
        max_fps: SCREEN_FPS as f32,
        screen: true,
    }
}

pub struct MediaEngine {
    io: MediaIo,
    settings: MediaSettings,
    stats: StatsHandle,
    errors: PipelineErrors,
    /// Echo cancellation and friends, shared by the send (capture) and playout (render) threads.
    apm: Option<Arc<AudioProcessor>>,
    mic_muted: Arc<AtomicBool>,
    /// What the network lets video use (written by the transport).
    rate: Arc<BweShared>,
    /// Tells the receive pipelines to end.
    stop_receivers: Arc<AtomicBool>,
    /// Who waits for whom between the received audio and video.
    lip_sync: Arc<Mutex<LipSync>>,
    video: Option<VideoPipeline>,
    audio: Option<Pipeline>,
    /// Where another microphone goes once the audio send thread runs.
    mic_slot: Option<SwapSlot<dyn AudioSource>>,
    /// Where another speaker goes once the playout thread runs.
    speaker_slot: Option<SwapSlot<dyn AudioSink>>,
    receivers: Vec<JoinHandle<()>>,
}

/// What became of a device handed to the engine during a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switched {
    /// It is (or is about to be) in use.
    Now,
    /// It cannot be used in this call (the connection was made without that kind of media).
    NotInThisCall,
    /// The pipeline has too many changes waiting; it was closed unused.
    Busy,
}

impl MediaEngine {
    /// Takes the call's devices; nothing runs until `start_sending` and `receive`. The second
    /// value is a problem to tell the person (audio processing could not start).
    /// `rate`: the transport's congestion-control state, which the encoders follow.
    pub fn new(
        io: MediaIo,
        settings: MediaSettings,
        rate: Arc<BweShared>,
        stats: StatsHandle,
        errors: PipelineErrors,
    ) -> (Self, Option<String>) {
        let mut problem = None;
        let apm = match (&io.mic, settings.apm.any()) {
            (Some(_), true) => match AudioProcessor::new(settings.apm) {
                Ok(apm) => Some(Arc::new(apm)),
                Err(err) => {
                    problem = Some(format!("{err}; audio goes out unprocessed"));
                    None
                }
            },
            _ => None,
        };
        let engine = Self {
            io,
            settings,
            stats,
            errors,
            apm,
            mic_muted: Arc::new(AtomicBool::new(false)),
            rate,
            stop_receivers: Arc::new(AtomicBool::new(false)),
            lip_sync: Arc::default(),
            video: None,
            audio: None,
            mic_slot: None,
            speaker_slot: None,
            receivers: Vec::new(),
        };
        (engine, problem)
    }

    /// Whether there is a microphone to send from.
    pub fn has_mic(&self) -> bool {
        self.io.mic.is_some()
    }

    /// Starts the send pipelines on the negotiated tracks (`None`: that kind could not be
    /// negotiated). Returns whether a screen is shared from the start.
    pub fn start_sending(&mut self, video: Option<TrackOut>, audio: Option<TrackOut>) -> bool {
        let mut sharing = false;
        if let Some(out) = video {
            let mut initial = Vec::new();
            if let Some(camera) = self.io.camera.take() {
                initial.push((camera, self.settings.video));
            }
            if let Some(screen) = self.io.screen.take() {
                initial.push((screen, screen_settings(self.settings.video)));
                sharing = true;
            }
            self.video = Some(media_send::start_video(
                initial,
                out,
                self.rate.clone(),
                self.stats.clone(),
                self.errors.clone(),
                self.settings.test,
            ));
        }
        if let (Some(source), Some(out)) = (self.io.mic.take(), audio) {
            let (source, slot) = SwappableMic::new(source);
            self.mic_slot = Some(slot);
            self.audio = Some(media_send::start_audio(
                Box::new(source),
                self.settings.audio_bitrate_bps,
                self.mic_muted.clone(),
                self.apm.clone(),
                out,
                self.rate.clone(),
                self.stats.clone(),
                self.errors.clone(),
                self.settings.test.audio_delay,
            ));
        }
        sharing
    }

    /// Whether video is being sent (so a screen can be shared).
    pub fn sending_video(&self) -> bool {
        self.video.is_some()
    }

    /// A remote track arrived: decode and show (video) or play (audio, the first track only).
    pub fn receive_video(&mut self, track: Arc<dyn TrackRemote>) {
        let thread = media_recv::spawn_video(
            track,
            self.io.video_out.clone(),
            self.stats.clone(),
            self.rate.clone(),
            self.sync_link(),
            self.stop_receivers.clone(),
            self.settings.test,
        );
        self.receivers.extend(thread);
    }

    pub fn receive_audio(&mut self, track: Arc<dyn TrackRemote>) {
        let Some(sink) = self.io.speaker.take() else {
            tracing::debug!("a second audio track: nothing left to play it on");
            return;
        };
        let (sink, slot) = SwappableSpeaker::new(sink);
        self.speaker_slot = Some(slot);
        let thread = media_recv::spawn_audio(
            track,
            Box::new(sink),
            self.apm.clone(),
            self.stats.clone(),
            self.sync_link(),
            self.stop_receivers.clone(),
        );
        self.receivers.extend(thread);
    }

    /// What the receive pipelines share for lip sync (`None`: turned off).
    fn sync_link(&self) -> Option<SyncLink> {
        (!self.settings.test.no_lip_sync).then(|| SyncLink {
            transport: self.rate.clone(),
            lip: self.lip_sync.clone(),
        })
    }

    pub fn set_mic_muted(&self, muted: bool) {
        self.mic_muted.store(muted, Ordering::Relaxed);
    }

    pub fn set_camera_on(&self, on: bool) {
        if let Some(video) = &self.video {
            if video.control.try_send(VideoControl::Paused(!on)).is_err() {
                tracing::warn!("the video pipeline is busy; camera on/off ignored");
            }
        }
    }

    /// Sends `source` instead of the camera (or goes back to the camera with `None`). Returns
    /// false when no video is being sent yet.
    pub fn share_screen(&self, source: Option<Box<dyn VideoSource>>) -> bool {
        let Some(video) = &self.video else {
            return false;
        };
        let control = match source {
            Some(source) => VideoControl::Push(source, screen_settings(self.settings.video)),
            None => VideoControl::Pop,
        };
        video.control.try_send(control).is_ok()
    }

    /// Sends from `source` instead of the microphone from the next block on (the RTP clock goes
    /// on: it counts samples). Muted stays muted.
    pub fn switch_mic(&mut self, source: Box<dyn AudioSource>) -> Switched {
        if let Some(slot) = &self.mic_slot {
            // One chosen before the send thread took the last one closes unused.
            drop(slot.put(source));
        } else if self.io.mic.is_some() {
            // Not connected yet: the send pipeline starts with this one.
            self.io.mic = Some(source);
        } else {
            // There was no microphone, so the call was negotiated without sending audio.
            return Switched::NotInThisCall;
        }
        Switched::Now
    }

    /// Plays on `sink` instead of the speaker from the next frame on; the old one is finished.
    /// The echo canceller goes on hearing what is played.
    pub fn switch_speaker(&mut self, sink: Box<dyn AudioSink>) -> Switched {
        match &self.speaker_slot {
            Some(slot) => {
                if let Some(mut unused) = slot.put(sink) {
                    finish_sink(unused.as_mut());
                }
            }
            None => {
                // No audio has arrived yet: the playout thread starts with this one.
                if let Some(mut old) = self.io.speaker.replace(sink) {
                    finish_sink(old.as_mut());
                }
            }
        }
        Switched::Now
    }

    /// Sends from `source` instead of the camera; under a shared screen it is what "stop sharing"
    /// returns to, and a camera that is off stays off. A different size is fine: the encoder
    /// starts again at the new size, with a keyframe.
    pub fn switch_camera(&mut self, source: Box<dyn VideoSource>) -> Switched {
        let Some(video) = &self.video else {
            // Not connected yet: sending starts with this one.
            self.io.camera = Some(source);
            return Switched::Now;
        };
        match video
            .control
            .try_send(VideoControl::Camera(source, self.settings.video))
        {
            Ok(()) => Switched::Now,
            Err(_) => {
                tracing::warn!("the video pipeline is busy; camera switch ignored");
                Switched::Busy
            }
        }
    }

    /// The latest round-trip time, which sets how long a gap in the video waits for a resend.
    pub fn set_rtt_ms(&self, rtt_ms: f64) {
        self.rate
            .path_rtt_us
            .store((rtt_ms * 1000.0) as u64, Ordering::Relaxed);
    }

    /// Ends every media thread and waits for each: when this returns, the sinks have finished
    /// (a recording is complete). Blocks; from async code, call it through `spawn_blocking`.
    pub fn stop(&mut self) {
        self.stop_receivers.store(true, Ordering::Relaxed);
        if let Some(mut video) = self.video.take() {
            video.pipeline.stop();
        }
        if let Some(mut audio) = self.audio.take() {
            audio.stop();
        }
        for thread in self.receivers.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a media receive thread panicked");
            }
        }
        // A speaker that never got a track still finishes (a recording with no audio is valid).
        if let Some(mut sink) = self.io.speaker.take() {
            finish_sink(sink.as_mut());
        }
    }
}

fn finish_sink(sink: &mut dyn AudioSink) {
    if let Err(err) = sink.finish() {
        tracing::warn!(%err, speaker = sink.name(), "could not finish the audio output");
    }
}

impl Drop for MediaEngine {
    fn drop(&mut self) {
        self.stop();
    }
}
