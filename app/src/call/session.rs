//! One call from start to end: join the room through the signaling server, negotiate the
//! PeerConnection (whoever arrives second offers; a simultaneous offer is resolved the "perfect
//! negotiation" way), trickle ICE both ways, start the media pipelines once connected, run chat and
//! file transfer, and report events. The headless `join` and the window drive the same `Session`
//! through `SessionCommand`s and read `SessionEvent`s; neither ever blocks on the network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_protocol::{ClientMessage, IceServer, PeerId, RoomCode, ServerMessage, SignalPayload};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::Track as _;
use webrtc::peer_connection::{
    RTCIceCandidateInit, RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, StatsSelector,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

use super::collector::StatsHandle;
use super::data::{CONTROL_LABEL, FILE_LABEL};
use super::data_link::{watch_channel, DataLink, LinkEvent, LinkNotice};
use super::media_recv::{self, VideoOut};
use super::media_send::{self, Pipeline, TrackOut, VideoControl, VideoPipeline};
use super::peer::{self, NetworkSettings, Peer, PeerEvent};
use super::security::security_code;
use super::signaling_client::{Joined, SignalingClient};
use super::CallError;
use crate::capture::{self, screen};
use crate::capture::{AudioSink, AudioSource, VideoSource};
use crate::codec::apm::{ApmSettings, AudioProcessor};
use crate::codec::h264::{default_bitrate_bps, EncoderSettings};

/// How to place the call.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub server_url: String,
    /// `None` asks the server for a new room.
    pub room: Option<RoomCode>,
    pub name: String,
    pub extra_ice_servers: Vec<IceServer>,
    pub relay_only: bool,
    pub bind: Vec<SocketAddr>,
    pub video: EncoderSettings,
    pub audio_bitrate_bps: i32,
    pub apm: ApmSettings,
    pub receive_dir: PathBuf,
    pub auto_accept_files: bool,
    /// Offer as soon as the other person joins, even when they will offer too (tests glare).
    pub eager_offer: bool,
}

/// The devices (or their synthetic twins) the call uses.
pub struct MediaIo {
    pub camera: Option<Box<dyn VideoSource>>,
    pub mic: Option<Box<dyn AudioSource>>,
    pub speaker: Box<dyn AudioSink>,
    /// A screen to share from the start (`--screen`), sent instead of the camera.
    pub screen: Option<Box<dyn VideoSource>>,
    pub video_out: Arc<dyn VideoOut>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    Joined {
        room: RoomCode,
        me: PeerId,
    },
    PeerJoined {
        name: String,
    },
    Connected {
        security_code: Option<String>,
    },
    /// The connection dropped; ICE is trying to get it back.
    Reconnecting,
    ScreenSharing(bool),
    PeerLeft,
    Data(LinkNotice),
    Warning(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    Chat(String),
    SendFile(PathBuf),
    AcceptFile(u32),
    DeclineFile(u32),
    SetMicMuted(bool),
    /// Start sharing this screen (`0`, a name, or `window:TITLE`), or stop with `None`.
    ShareScreen(Option<String>),
    /// Turn the camera off (nothing is sent) or back on.
    SetCameraOn(bool),
    Hangup,
}

/// How a call ended (when it did not fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    HungUp,
    PeerLeft,
}

pub struct Session {
    pub events: mpsc::Receiver<SessionEvent>,
    pub commands: mpsc::Sender<SessionCommand>,
    pub stats: StatsHandle,
    pub task: tokio::task::JoinHandle<Result<Ended, CallError>>,
}

impl Session {
    /// Starts the call on the current tokio runtime; `started` is when the user asked for it.
    pub fn start(config: SessionConfig, io: MediaIo, started: Instant) -> Self {
        let (event_tx, events) = mpsc::channel(256);
        let (commands, command_rx) = mpsc::channel(64);
        let stats = StatsHandle::new(started);
        let task = tokio::spawn(run(config, io, event_tx, command_rx, stats.clone()));
        Self {
            events,
            commands,
            stats,
            task,
        }
    }
}

/// Remote candidates that arrived before the remote description, and local ones before we knew
/// whom to send them to.
#[derive(Default)]
struct Trickle {
    remote_pending: Vec<RTCIceCandidateInit>,
    local_pending: Vec<RTCIceCandidateInit>,
}

struct Call {
    config: SessionConfig,
    pc: Peer,
    me: PeerId,
    remote: Option<PeerId>,
    signaling: mpsc::Sender<ClientMessage>,
    trickle: Trickle,
    making_offer: bool,
    channels_created: bool,
    events: mpsc::Sender<SessionEvent>,
    link_events: mpsc::Sender<LinkEvent>,
}

impl Call {
    async fn emit(&self, event: SessionEvent) {
        let _ = self.events.send(event).await;
    }

    async fn signal(&self, payload: SignalPayload) {
        let Some(to) = self.remote else { return };
        if self
            .signaling
            .send(ClientMessage::Signal { to, payload })
            .await
            .is_err()
        {
            tracing::debug!("signaling is gone");
        }
    }

    async fn make_offer(&mut self) -> Result<(), CallError> {
        if !self.channels_created {
            self.channels_created = true;
            for label in [CONTROL_LABEL, FILE_LABEL] {
                let dc = self.pc.create_data_channel(label, None).await?;
                watch_channel(dc, self.link_events.clone());
            }
        }
        self.making_offer = true;
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.making_offer = false;
        if let Some(desc) = self.pc.local_description().await {
            tracing::debug!("sending offer");
            self.signal(SignalPayload::Offer { sdp: desc.sdp }).await;
        }
        Ok(())
    }

    async fn on_offer(&mut self, sdp: String) -> Result<(), CallError> {
        let glare = self.making_offer || has_local_offer(&self.pc).await;
        // Perfect negotiation: the newer peer (higher id) is polite and yields.
        let polite = self.remote.is_some_and(|r| self.me > r);
        if glare && !polite {
            tracing::debug!("offer collision: keeping ours");
            return Ok(());
        }
        if glare {
            tracing::debug!("offer collision: rolling back ours");
            self.pc
                .set_local_description(RTCSessionDescription::rollback(None)?)
                .await?;
        }
        self.pc
            .set_remote_description(RTCSessionDescription::offer(sdp)?)
            .await?;
        self.flush_remote_candidates().await;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        if let Some(desc) = self.pc.local_description().await {
            self.signal(SignalPayload::Answer { sdp: desc.sdp }).await;
        }
        Ok(())
    }

    async fn on_answer(&mut self, sdp: String) -> Result<(), CallError> {
        if !has_local_offer(&self.pc).await {
            tracing::debug!("ignoring an answer we did not ask for");
            return Ok(());
        }
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp)?)
            .await?;
        self.flush_remote_candidates().await;
        Ok(())
    }

    async fn on_remote_candidate(&mut self, candidate: RTCIceCandidateInit) {
        if self.pc.remote_description().await.is_none() {
            self.trickle.remote_pending.push(candidate);
            return;
        }
        if let Err(err) = self.pc.add_ice_candidate(candidate).await {
            tracing::debug!(%err, "ignoring a remote candidate");
        }
    }

    async fn flush_remote_candidates(&mut self) {
        for candidate in std::mem::take(&mut self.trickle.remote_pending) {
            if let Err(err) = self.pc.add_ice_candidate(candidate).await {
                tracing::debug!(%err, "ignoring a remote candidate");
            }
        }
    }

    async fn on_local_candidate(&mut self, candidate: RTCIceCandidateInit) {
        if self.remote.is_none() {
            self.trickle.local_pending.push(candidate);
            return;
        }
        self.signal(candidate_payload(candidate)).await;
    }

    async fn set_remote(&mut self, id: PeerId) {
        if self.remote.is_some() {
            return;
        }
        self.remote = Some(id);
        for candidate in std::mem::take(&mut self.trickle.local_pending) {
            self.signal(candidate_payload(candidate)).await;
        }
    }
}

fn candidate_payload(c: RTCIceCandidateInit) -> SignalPayload {
    SignalPayload::Candidate {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_mline_index,
    }
}

/// Encoder settings for a shared screen: screen-content mode at its lower frame rate, with the
/// bits a full-HD screen of text needs.
fn screen_settings(camera: EncoderSettings) -> EncoderSettings {
    let (w, h) = screen::MAX_SIZE;
    EncoderSettings {
        bitrate_bps: default_bitrate_bps(w, h, screen::DEFAULT_FPS).max(camera.bitrate_bps),
        max_fps: screen::DEFAULT_FPS as f32,
        screen: true,
    }
}

/// Whether we sent an offer that is not answered yet (signaling state "have-local-offer").
async fn has_local_offer(pc: &Peer) -> bool {
    pc.pending_local_description()
        .await
        .is_some_and(|d| d.sdp_type == RTCSdpType::Offer)
}

/// A local track and the sender carrying it.
async fn add_local_track(
    pc: &Peer,
    kind: RtpCodecKind,
    stream_tag: u32,
) -> Result<Arc<TrackLocalStaticSample>, CallError> {
    let codec = match kind {
        RtpCodecKind::Video => peer::h264_codec(),
        _ => peer::opus_codec(),
    };
    let track = Arc::new(TrackLocalStaticSample::new(
        Instant::now(),
        // Ids unique to this peer: webrtc-rs routes incoming RTCP by track id, and a remote track
        // with the same id as ours would receive the keyframe requests meant for our sender.
        MediaStreamTrack::new(
            format!("confab-{stream_tag:08x}"),
            format!("confab-{kind}-{stream_tag:08x}"),
            format!("confab-{kind}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(rand::random::<u32>()),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        ),
    )?);
    pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
    Ok(track)
}

async fn track_out(pc: &Peer, track: &Arc<TrackLocalStaticSample>) -> Option<TrackOut> {
    let ssrc = *track.ssrcs().await.first()?;
    let track_id = track.track_id().await;
    for sender in pc.get_senders().await {
        if sender.track().track_id().await != track_id {
            continue;
        }
        let params = sender.get_parameters().await.ok()?;
        let payload_type = params.rtp_parameters.codecs.first()?.payload_type;
        return Some(TrackOut {
            track: track.clone(),
            ssrc,
            payload_type,
        });
    }
    None
}

async fn run(
    config: SessionConfig,
    mut io: MediaIo,
    events: mpsc::Sender<SessionEvent>,
    mut commands: mpsc::Receiver<SessionCommand>,
    stats: StatsHandle,
) -> Result<Ended, CallError> {
    let (mut signaling, joined) =
        SignalingClient::join(&config.server_url, config.room.as_ref(), &config.name).await?;
    let Joined {
        room,
        me,
        peers,
        mut ice_servers,
    } = joined;
    {
        let mut c = stats.lock();
        c.stats.ms_to.signaling = Some(c.ms_now());
        c.stats.room = room.to_string();
    }
    tracing::info!(%room, %me, "joined");
    let _ = events
        .send(SessionEvent::Joined {
            room: room.clone(),
            me,
        })
        .await;

    ice_servers.extend(config.extra_ice_servers.iter().cloned());
    let network = NetworkSettings {
        ice_servers,
        relay_only: config.relay_only,
        bind: config.bind.clone(),
    };
    let (peer_tx, mut peer_rx) = mpsc::channel::<PeerEvent>(256);
    let pc = peer::build(&network, peer_tx).await?;

    let stream_tag = rand::random::<u32>();
    // Always a video track to send on, even without a camera: screen sharing can start any time
    // and must not need a renegotiation.
    let video_track = add_local_track(&pc, RtpCodecKind::Video, stream_tag).await?;
    let audio_track = match io.mic {
        Some(_) => Some(add_local_track(&pc, RtpCodecKind::Audio, stream_tag).await?),
        None => {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            };
            pc.add_transceiver_from_kind(RtpCodecKind::Audio, Some(init))
                .await?;
            None
        }
    };

    let (link_tx, mut link_rx) = mpsc::channel::<LinkEvent>(256);
    let mut link = DataLink::new(
        config.receive_dir.clone(),
        config.auto_accept_files,
        link_tx.clone(),
        stats.clone(),
    );
    let (error_tx, mut error_rx) = mpsc::unbounded_channel::<String>();
    let stop_receivers = Arc::new(AtomicBool::new(false));
    let mic_muted = Arc::new(AtomicBool::new(false));
    let rtt_us = Arc::new(AtomicU64::new(0));
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let mut pipelines: Vec<Pipeline> = Vec::new();
    let mut video: Option<VideoPipeline> = None;
    // Echo cancellation and friends, shared by the send (capture) and playout (render) threads.
    let apm = match (&io.mic, config.apm.any()) {
        (Some(_), true) => match AudioProcessor::new(config.apm) {
            Ok(apm) => Some(Arc::new(apm)),
            Err(err) => {
                let _ = events
                    .send(SessionEvent::Warning(format!(
                        "{err}; audio goes out unprocessed"
                    )))
                    .await;
                None
            }
        },
        _ => None,
    };
    let mut speaker = Some(std::mem::replace(
        &mut io.speaker,
        Box::new(crate::capture::wav::NullSink),
    ));

    let mut call = Call {
        config: config.clone(),
        pc: pc.clone(),
        me,
        remote: None,
        signaling: signaling.sender(),
        trickle: Trickle::default(),
        making_offer: false,
        channels_created: false,
        events: events.clone(),
        link_events: link_tx.clone(),
    };
    let first = peers.first().map(|p| (p.id, p.name.clone()));
    if let Some((id, name)) = first {
        call.set_remote(id).await;
        call.emit(SessionEvent::PeerJoined { name }).await;
        call.make_offer().await?;
    }

    let mut connected = false;
    let mut ever_connected = false;
    let mut signaling_alive = true;
    let outcome: Result<Ended, CallError> = loop {
        tokio::select! {
            msg = signaling.recv(), if signaling_alive => match msg {
                Ok(ServerMessage::PeerJoined { peer }) => {
                    if call.remote.is_none() {
                        call.set_remote(peer.id).await;
                        call.emit(SessionEvent::PeerJoined { name: peer.name }).await;
                        if call.config.eager_offer {
                            call.make_offer().await?;
                        }
                    }
                }
                Ok(ServerMessage::PeerLeft { id }) if Some(id) == call.remote => {
                    call.emit(SessionEvent::PeerLeft).await;
                    break Ok(Ended::PeerLeft);
                }
                Ok(ServerMessage::Signal { from, payload }) => {
                    if call.remote.is_none() {
                        call.set_remote(from).await;
                    }
                    if Some(from) != call.remote {
                        continue;
                    }
                    match payload {
                        SignalPayload::Offer { sdp } => call.on_offer(sdp).await?,
                        SignalPayload::Answer { sdp } => call.on_answer(sdp).await?,
                        SignalPayload::Candidate { candidate, sdp_mid, sdp_mline_index } => {
                            let init = RTCIceCandidateInit { candidate, sdp_mid, sdp_mline_index, ..Default::default() };
                            call.on_remote_candidate(init).await;
                        }
                        SignalPayload::EndOfCandidates => {}
                        SignalPayload::Bye => {
                            call.emit(SessionEvent::PeerLeft).await;
                            break Ok(Ended::PeerLeft);
                        }
                    }
                }
                Ok(ServerMessage::Error { message, .. }) => call.emit(SessionEvent::Warning(message)).await,
                Ok(_) => {}
                Err(err) => {
                    signaling_alive = false;
                    if !ever_connected {
                        break Err(err);
                    }
                    // The call is peer to peer: it goes on without the server.
                    call.emit(SessionEvent::Warning(format!("{err}; the call continues"))).await;
                }
            },
            event = peer_rx.recv() => match event {
                Some(PeerEvent::LocalCandidate(candidate)) => call.on_local_candidate(candidate).await,
                Some(PeerEvent::GatheringComplete) => call.signal(SignalPayload::EndOfCandidates).await,
                Some(PeerEvent::State(state)) => {
                    tracing::debug!(?state, "connection state");
                    match state {
                        RTCPeerConnectionState::Connected => {
                            connected = true;
                            if !ever_connected {
                                ever_connected = true;
                                {
                                    let mut c = stats.lock();
                                    c.stats.ms_to.ice_connected = Some(c.ms_now());
                                }
                                match track_out(&pc, &video_track).await {
                                    Some(out) => {
                                        let mut initial = Vec::new();
                                        if let Some(camera) = io.camera.take() {
                                            initial.push((camera, config.video));
                                        }
                                        if let Some(screen) = io.screen.take() {
                                            initial.push((screen, screen_settings(config.video)));
                                            call.emit(SessionEvent::ScreenSharing(true)).await;
                                        }
                                        video = Some(media_send::start_video(initial, out, stats.clone(), error_tx.clone()));
                                    }
                                    None => call.emit(SessionEvent::Warning("video could not be negotiated".into())).await,
                                }
                                if let (Some(source), Some(track)) = (io.mic.take(), &audio_track) {
                                    match track_out(&pc, track).await {
                                        Some(out) => pipelines.push(media_send::start_audio(source, config.audio_bitrate_bps, mic_muted.clone(), apm.clone(), out, stats.clone(), error_tx.clone())),
                                        None => call.emit(SessionEvent::Warning("audio could not be negotiated".into())).await,
                                    }
                                }
                                let code = match (pc.local_description().await, pc.remote_description().await) {
                                    (Some(l), Some(r)) => security_code(&l.sdp, &r.sdp),
                                    _ => None,
                                };
                                stats.lock().stats.security_code = code.clone();
                                call.emit(SessionEvent::Connected { security_code: code }).await;
                            }
                        }
                        RTCPeerConnectionState::Disconnected if connected => {
                            connected = false;
                            call.emit(SessionEvent::Reconnecting).await;
                        }
                        RTCPeerConnectionState::Failed => {
                            break Err(CallError::IceFailed {
                                hint: if network.relay_only { " through the TURN relay" } else { "; a TURN server may be needed" },
                            });
                        }
                        RTCPeerConnectionState::Closed => break Ok(Ended::PeerLeft),
                        _ => {}
                    }
                }
                Some(PeerEvent::Track(track)) => match track.kind().await {
                    RtpCodecKind::Video => media_recv::spawn_video(track, io.video_out.clone(), stats.clone(), rtt_us.clone(), stop_receivers.clone()),
                    RtpCodecKind::Audio => {
                        if let Some(sink) = speaker.take() {
                            media_recv::spawn_audio(track, sink, apm.clone(), stats.clone(), stop_receivers.clone());
                        }
                    }
                    _ => {}
                },
                Some(PeerEvent::DataChannel(dc)) => watch_channel(dc, link_tx.clone()),
                None => break Err(CallError::WebRtc("the connection stopped".into())),
            },
            Some(event) = link_rx.recv() => {
                let notices = match event {
                    LinkEvent::Open(dc) => link.opened(dc).await,
                    LinkEvent::Control(text) => link.on_control(&text).await,
                    LinkEvent::Chunk(data) => link.on_chunk(&data).await,
                    LinkEvent::SendProgress { id, sent, total } => link.send_progress(id, sent, total),
                    LinkEvent::SendFailed { id, error } => link.send_failed(id, error).await,
                    LinkEvent::Closed(label) => {
                        tracing::debug!(%label, "data channel closed");
                        Vec::new()
                    }
                };
                for notice in notices {
                    call.emit(SessionEvent::Data(notice)).await;
                }
            }
            Some(message) = error_rx.recv() => call.emit(SessionEvent::Warning(message)).await,
            _ = stats_tick.tick(), if ever_connected => {
                fill_ice_stats(&pc, &stats).await;
                let rtt_ms = stats.lock().stats.ice.rtt_ms;
                if let Some(rtt_ms) = rtt_ms {
                    rtt_us.store((rtt_ms * 1000.0) as u64, Ordering::Relaxed);
                }
            }
            command = commands.recv() => match command {
                Some(SessionCommand::Chat(text)) => link.chat(text).await,
                Some(SessionCommand::SendFile(path)) => {
                    for notice in link.offer_file(&path) {
                        call.emit(SessionEvent::Data(notice)).await;
                    }
                }
                Some(SessionCommand::AcceptFile(id)) => {
                    for notice in link.accept(id).await {
                        call.emit(SessionEvent::Data(notice)).await;
                    }
                }
                Some(SessionCommand::DeclineFile(id)) => link.decline(id).await,
                Some(SessionCommand::SetMicMuted(muted)) => mic_muted.store(muted, Ordering::Relaxed),
                Some(SessionCommand::SetCameraOn(on)) => {
                    if let Some(pipeline) = &video {
                        let _ = pipeline.control.send(VideoControl::Paused(!on));
                    }
                }
                Some(SessionCommand::ShareScreen(spec)) => {
                    let Some(pipeline) = &video else {
                        call.emit(SessionEvent::Warning("screen sharing starts once the call is connected".into())).await;
                        continue;
                    };
                    match spec {
                        Some(spec) => {
                            // Opening captures one frame: keep it off the async threads.
                            let opened = tokio::task::spawn_blocking(move || capture::open_screen(&spec, screen::DEFAULT_FPS)).await;
                            match opened {
                                Ok(Ok(source)) => {
                                    let _ = pipeline.control.send(VideoControl::Push(source, screen_settings(config.video)));
                                    call.emit(SessionEvent::ScreenSharing(true)).await;
                                }
                                Ok(Err(err)) => call.emit(SessionEvent::Warning(format!("cannot share the screen: {err}"))).await,
                                Err(err) => call.emit(SessionEvent::Warning(format!("cannot share the screen: {err}"))).await,
                            }
                        }
                        None => {
                            let _ = pipeline.control.send(VideoControl::Pop);
                            call.emit(SessionEvent::ScreenSharing(false)).await;
                        }
                    }
                }
                Some(SessionCommand::Hangup) | None => {
                    call.signal(SignalPayload::Bye).await;
                    break Ok(Ended::HungUp);
                }
            },
        }
    };

    fill_ice_stats(&pc, &stats).await;
    stop_receivers.store(true, Ordering::Relaxed);
    if let Some(mut v) = video.take() {
        v.pipeline.stop();
    }
    for mut p in pipelines {
        p.stop();
    }
    if let Err(err) = pc.close().await {
        tracing::debug!(%err, "closing the connection");
    }
    // Let the playout thread notice the stop flag and finish its output.
    tokio::time::sleep(Duration::from_millis(60)).await;
    outcome
}

/// The selected candidate pair: types on both ends and the round-trip time.
async fn fill_ice_stats(pc: &Peer, stats: &StatsHandle) {
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let pair = report
        .candidate_pairs()
        .filter(|p| p.nominated || p.packets_received > 0)
        .max_by_key(|p| (p.nominated, p.bytes_received));
    let Some(pair) = pair else { return };
    // Candidate entries are keyed "RTCLocalIceCandidate_<id>" / "RTCRemoteIceCandidate_<id>".
    let candidate_type = |id: &str| {
        report.iter().find_map(|entry| match entry {
            webrtc::peer_connection::RTCStatsReportEntry::LocalCandidate(c)
            | webrtc::peer_connection::RTCStatsReportEntry::RemoteCandidate(c)
                if c.stats.id == id || c.stats.id.ends_with(&format!("_{id}")) =>
            {
                Some(c.candidate_type.to_string())
            }
            _ => None,
        })
    };
    let mut c = stats.lock();
    c.stats.ice.local_candidate_type = candidate_type(&pair.local_candidate_id);
    c.stats.ice.remote_candidate_type = candidate_type(&pair.remote_candidate_id);
    if pair.current_round_trip_time > 0.0 {
        c.stats.ice.rtt_ms = Some(pair.current_round_trip_time * 1000.0);
    }
}
