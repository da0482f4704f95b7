//! The receive pipelines. Video: a task reads RTP from the remote track into the frame assembler
//! (asking for keyframes with PLI when it must), and a named thread decodes complete frames and
//! hands them to the `VideoOut`. Audio: a task fills the audio jitter buffer, and a named thread
//! plays one 20 ms frame at a time (decoded, recovered from FEC, or concealed) into the sink.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::audio_jitter::{AudioJitterBuffer, Playout};
use super::collector::StatsHandle;
use super::frame_assembler::{AssembledFrame, Event, FrameAssembler, RtpIn};
use confab_codecs::apm::AudioProcessor;
use confab_codecs::h264::H264Decoder;
use confab_codecs::opus::OpusDecoder;
use confab_media::audio::{BLOCK_SAMPLES, FRAME_SAMPLES};
use confab_media::test_signal::MarkerDetector;
use confab_media::{clock, VideoFrame};
use confab_media::{AudioSink, EchoReference, Pacer, VideoOut};

/// Frames waiting for the decoder; when it falls behind, frames are dropped and a keyframe asked for.
const DECODE_QUEUE: usize = 8;

/// `rtt_us`: the latest round-trip time (0 until known), which sets how long a gap waits for NACK.
/// Returns the decode thread, which ends soon after `stop` is set.
pub fn spawn_video(
    track: Arc<dyn TrackRemote>,
    out: Arc<dyn VideoOut>,
    stats: StatsHandle,
    rtt_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let (frame_tx, frame_rx) = sync_channel::<AssembledFrame>(DECODE_QUEUE);
    let need_keyframe = Arc::new(AtomicBool::new(false));
    let decoder = {
        let (stats, need_keyframe, stop) = (stats.clone(), need_keyframe.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("video-decode".into())
            .spawn(move || decode_loop(frame_rx, out, stats, need_keyframe, stop));
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
                    let rtt = rtt_us.load(Ordering::Relaxed);
                    if rtt > 0 {
                        assembler.set_rtt(Duration::from_micros(rtt));
                    }
                    let mut events = assembler.poll(Instant::now());
                    if need_keyframe.swap(false, Ordering::Relaxed) {
                        events.push(Event::KeyframeNeeded);
                    }
                    let s = assembler.stats();
                    let mut c = stats.lock();
                    c.stats.video_recv.frames_dropped = s.frames_dropped;
                    c.stats.video_recv.keyframe_requests_sent = plis_sent;
                    c.stats.video_recv.packets_late = s.late;
                    events
                }
            };
            for event in events {
                match event {
                    Event::Frame(frame) => {
                        stats.lock().video_frame_received(
                            frame.au.annexb.len(),
                            frame.first_arrival.elapsed(),
                        );
                        match frame_tx.try_send(frame) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => {
                                need_keyframe.store(true, Ordering::Relaxed)
                            }
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                    Event::KeyframeNeeded => {
                        plis_sent += 1;
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

fn decode_loop(
    frames: Receiver<AssembledFrame>,
    out: Arc<dyn VideoOut>,
    stats: StatsHandle,
    need_keyframe: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(err) => {
            tracing::error!(%err, "remote video cannot be shown");
            return;
        }
    };
    loop {
        // A timeout so that `stop` is seen even when the receive task can no longer run.
        let frame = match frames.recv_timeout(Duration::from_millis(100)) {
            Ok(frame) => frame,
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
        let started = Instant::now();
        match decoder.decode(&frame.au.annexb) {
            Ok(Some(picture)) => {
                let picture = VideoFrame {
                    capture_ts_us: clock::now_us(),
                    ..picture
                };
                tracing::trace!(rtp_timestamp = frame.rtp_timestamp, "decoded");
                stats.lock().frame_decoded(&picture, started.elapsed());
                out.frame(&picture);
            }
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(%err, bytes = frame.au.annexb.len(), keyframe = frame.au.keyframe, head = ?&frame.au.annexb[..frame.au.annexb.len().min(24)], "decode failed; asking for a keyframe");
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
        apm.render(&pending[..whole]);
        pending.drain(..whole);
    })
}

/// `apm`: the call's echo canceller, told about everything played (its far end): by the sink when
/// it knows what the device really plays, otherwise as written.
/// Returns the playout thread, which finishes the sink and ends soon after `stop` is set.
pub fn spawn_audio(
    track: Arc<dyn TrackRemote>,
    mut sink: Box<dyn AudioSink>,
    apm: Option<Arc<AudioProcessor>>,
    stats: StatsHandle,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let jitter = Arc::new(Mutex::new(AudioJitterBuffer::new()));
    let playout = {
        let (jitter, stats, stop) = (jitter.clone(), stats.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("audio-playout".into())
            .spawn(move || {
                let mut decoder = match OpusDecoder::new() {
                    Ok(d) => d,
                    Err(err) => {
                        tracing::error!(%err, "remote audio cannot be played");
                        return;
                    }
                };
                let mut far_end = apm.and_then(|apm| sink.set_echo_reference(echo_reference(apm)));
                let mut pacer = Pacer::new(Duration::from_millis(20));
                let mut pcm = vec![0f32; FRAME_SAMPLES * 6];
                let mut markers = MarkerDetector::default();
                let mut heard_anything = false;
                while !stop.load(Ordering::Relaxed) {
                    pacer.wait();
                    let decision = jitter
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pop(Instant::now());
                    let result = match &decision {
                        Playout::Silence => {
                            pcm[..FRAME_SAMPLES].fill(0.0);
                            Ok(FRAME_SAMPLES)
                        }
                        Playout::Packet(p) => decoder.decode(p, &mut pcm),
                        Playout::Recover(next) => decoder.recover(next, &mut pcm),
                        Playout::Conceal => decoder.conceal(&mut pcm),
                    };
                    let n = match result {
                        Ok(n) => n.min(pcm.len()),
                        Err(err) => {
                            tracing::debug!(%err, "audio decode failed; concealing");
                            decoder.conceal(&mut pcm).unwrap_or(0)
                        }
                    };
                    let samples = &pcm[..n];
                    if let Some(far_end) = &mut far_end {
                        far_end(samples);
                    }
                    let play_us = clock::now_us();
                    if let Err(err) = sink.write(samples) {
                        let speaker = sink.name();
                        tracing::warn!(%err, speaker, "the speaker failed; remote audio is off");
                        break;
                    }
                    let mut c = stats.lock();
                    if !matches!(decision, Playout::Silence) {
                        if !heard_anything {
                            heard_anything = true;
                            c.first_audio();
                        }
                        for latency in markers.push(samples, play_us) {
                            c.audio_latency(latency);
                        }
                    }
                    let s = jitter.lock().unwrap_or_else(|p| p.into_inner()).stats();
                    let a = &mut c.stats.audio_recv;
                    a.packets_received = s.packets;
                    a.frames_decoded = s.played;
                    a.frames_recovered_fec = s.recovered;
                    a.frames_concealed = s.concealed;
                    a.frames_stretched = s.stretched;
                    a.jitter_buffer_ms = s.target_ms;
                }
                if let Err(err) = sink.finish() {
                    tracing::warn!(%err, "could not finish the audio output");
                }
            });
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
                    jitter.lock().unwrap_or_else(|p| p.into_inner()).push(
                        packet.header.timestamp,
                        packet.payload,
                        Instant::now(),
                    );
                }
                TrackRemoteEvent::OnEnded => break,
                _ => {}
            }
        }
    });
    Some(playout)
}
