//! One call from start to end: join the room through the signaling server, build the
//! PeerConnection, and run a short event loop that hands signaling to the `Negotiator` (and
//! carries out what it decides), connection events and remote tracks to the `MediaEngine`, data
//! channel events to the `DataLink`, and commands from the person to whichever of them they are
//! for. The headless `join` and the window drive the same `Session` through `SessionCommand`s and
//! read `SessionEvent`s; neither ever blocks on the network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_codecs::apm::ApmSettings;
use confab_codecs::h264::EncoderSettings;
use confab_media::{AudioSink, AudioSource, VideoSource};
use confab_protocol::{ClientMessage, IceServer, PeerId, RoomCode, ServerMessage};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::Track as _;
use webrtc::peer_connection::{
    RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription, StatsSelector,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

use super::bwe::{start_rate, BweShared, Limit, INITIAL_BPS};
use super::collector::StatsHandle;
use super::data::{CONTROL_LABEL, FILE_LABEL};
use super::data_link::{watch_channel, DataLink, FilePolicy, LinkEvent, LinkNotice};
use super::description;
pub use super::media_engine::TestHooks;
use super::media_engine::{MediaEngine, MediaSettings, Switched};
use super::media_send::TrackOut;
use super::negotiator::{Action, Candidate, Link, Negotiator};
use super::peer::{self, NetworkSettings, Peer, PeerEvent};
use super::security::{certificate_fingerprint, first_sha256_fingerprint, security_code, SasState};
pub use super::server_trust::ServerTrust;
use super::signaling_client::{Joined, SignalingClient, SignalingEvent};
use super::stats::BweStats;
use super::thread_load;
use super::watchdog::RuntimeWatchdog;
use super::CallError;

/// How to place the call.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub server_url: String,
    /// Which certificates the server may show (a pin, a CA file, or the web's roots).
    pub server_trust: ServerTrust,
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
    /// Larger received files are declined before anything is written.
    pub max_file_bytes: u64,
    /// Offer as soon as the other person joins, even when they will offer too (tests glare).
    pub eager_offer: bool,
    /// Test hooks: a slower send path, lip sync off.
    pub test: TestHooks,
}

pub use super::media_engine::MediaIo;

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
    /// The security code is known (shortly after the data channel opens).
    SecurityCode(String),
    /// The connection dropped; ICE is trying to get it back.
    Reconnecting,
    ScreenSharing(bool),
    PeerLeft,
    Data(LinkNotice),
    Warning(String),
}

pub enum SessionCommand {
    Chat(String),
    /// Offer a file; `id` (chosen by the caller, unique within the call) names the transfer in
    /// the notices that follow.
    SendFile {
        id: u32,
        path: PathBuf,
    },
    AcceptFile(u32),
    DeclineFile(u32),
    SetMicMuted(bool),
    /// Send this screen (or window) instead of the camera, or go back to the camera with `None`.
    /// The caller opens the source (devices are not the engine's business).
    ShareScreen(Option<Box<dyn VideoSource>>),
    /// Turn the camera off (nothing is sent) or back on.
    SetCameraOn(bool),
    /// Use another microphone from now on, without renegotiating: the RTP timestamps go on
    /// without a jump, and muted stays muted. The caller opens it (as for `ShareScreen`).
    SwitchMic(Box<dyn AudioSource>),
    /// Play on another speaker from now on (the old one is finished); echo cancellation follows.
    SwitchSpeaker(Box<dyn AudioSink>),
    /// Use another camera: sent at once, or, while a screen is shared, when sharing stops; a
    /// camera that is off stays off. Its size may differ (the encoder restarts with a keyframe).
    SwitchCamera(Box<dyn VideoSource>),
    /// Whether the other person's video is shown now. While it is not (the window is minimized),
    /// the other side is asked for the least video (`video_limit`, 180p20): both computers
    /// save most of the video's work, and the picture comes back about a second after it is
    /// shown again.
    SetVideoShown(bool),
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

/// Called after each event is queued (and once when the session ends): a window asks for a
/// repaint here, then drains `Session::events` with `try_recv` while drawing.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The session's side of the event queue.
#[derive(Clone)]
struct EventSender {
    tx: mpsc::Sender<SessionEvent>,
    wake: Option<Waker>,
}

impl EventSender {
    async fn emit(&self, event: SessionEvent) {
        // The receiver is gone only when nobody watches the call any more.
        let _ = self.tx.send(event).await;
        self.wake();
    }

    fn wake(&self) {
        if let Some(wake) = &self.wake {
            wake();
        }
    }
}

/// Events waiting for the caller; when the caller falls this far behind, the session waits.
const EVENT_QUEUE: usize = 256;

impl Session {
    /// Starts the call on the current tokio runtime; `started` is when the user asked for it.
    pub fn start(config: SessionConfig, io: MediaIo, started: Instant) -> Self {
        Self::start_with_waker(config, io, started, None)
    }

    /// Like `start`, calling `wake` whenever an event is queued and when the call ends.
    pub fn start_with_waker(
        config: SessionConfig,
        io: MediaIo,
        started: Instant,
        wake: Option<Waker>,
    ) -> Self {
        confab_codecs::h264::load_decoder_in_background();
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let (commands, command_rx) = mpsc::channel(64);
        let stats = StatsHandle::new(started);
        let sender = EventSender { tx, wake };
        let task = tokio::spawn({
            let stats = stats.clone();
            async move {
                let outcome = run(config, io, sender.clone(), command_rx, stats).await;
                sender.wake();
                outcome
            }
        });
        Self {
            events,
            commands,
            stats,
            task,
        }
    }
}

/// Carries out what the negotiator decides on the PeerConnection, and reports back to it.
struct Negotiation {
    pc: Peer,
    neg: Negotiator,
    signaling: mpsc::Sender<ClientMessage>,
    channels_created: bool,
    events: EventSender,
    link_events: mpsc::Sender<LinkEvent>,
    /// `--relay-only` without a TURN server (yet): no offer or answer may be made.
    relay_missing: bool,
    /// The next offer restarts ICE (`Action::RestartIce`).
    ice_restart_next: bool,
    /// Ask the server for fresh TURN credentials before a restart (we were given a relay).
    uses_turn: bool,
    /// Our DTLS role, once the first negotiation settled it (`true`: the DTLS server).
    dtls_server: Option<bool>,
    stats: StatsHandle,
}

/// What carrying out the negotiator's actions means for the call.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Relay-only, and no TURN server to relay through: negotiating would gather what the person
    /// asked us not to use.
    NoRelay,
    PeerLeft,
    /// The connection stayed down through every restart.
    GaveUp,
}

impl Negotiation {
    async fn emit(&self, event: SessionEvent) {
        self.events.emit(event).await;
    }

    /// Carries out `actions` in order; each may lead the negotiator to more.
    async fn execute(&mut self, actions: Vec<Action>) -> Flow {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            if self.relay_missing && matches!(action, Action::MakeOffer | Action::AcceptOffer(_)) {
                return Flow::NoRelay;
            }
            let next = match action {
                Action::MakeOffer => match self.make_offer().await {
                    Ok(sdp) => {
                        self.stats.lock().offer_seen();
                        self.neg.local_offer_set(sdp, Instant::now())
                    }
                    Err(err) => self.neg.local_description_failed(&err.to_string()),
                },
                Action::Rollback => {
                    let rollback = match RTCSessionDescription::rollback(None) {
                        Ok(r) => self
                            .pc
                            .set_local_description(r)
                            .await
                            .map_err(CallError::from),
                        Err(err) => Err(err.into()),
                    };
                    if let Err(err) = rollback {
                        tracing::warn!(%err, "could not roll our offer back");
                    }
                    Vec::new()
                }
                Action::AcceptOffer(sdp) => {
                    self.stats.lock().offer_seen();
                    let carries_channels = description::has_data_channels(&sdp);
                    match self.set_remote(RTCSessionDescription::offer(sdp)).await {
                        Ok(()) => {
                            // The other side created the data channels: ours would be a second
                            // pair, opened on our first offer (an ICE restart).
                            self.channels_created |= carries_channels;
                            let mut next = self.neg.remote_description_set();
                            match self.make_answer().await {
                                Ok(sdp) => next.extend(self.neg.local_answer_set(sdp)),
                                Err(err) => {
                                    next.extend(self.neg.local_description_failed(&err.to_string()))
                                }
                            }
                            next
                        }
                        Err(err) => self.neg.remote_description_failed(&err.to_string()),
                    }
                }
                Action::AcceptAnswer(sdp) => {
                    // The answerer's role decides ours: it is the DTLS client when active.
                    let remote_setup = description::dtls_setup(&sdp).map(str::to_owned);
                    match self.set_remote(RTCSessionDescription::answer(sdp)).await {
                        Ok(()) => {
                            if self.dtls_server.is_none() {
                                self.dtls_server = remote_setup.map(|setup| setup == "active");
                            }
                            self.neg.remote_description_set()
                        }
                        Err(err) => self.neg.remote_description_failed(&err.to_string()),
                    }
                }
                Action::AddCandidate(c) => {
                    let init = RTCIceCandidateInit {
                        candidate: c.candidate,
                        sdp_mid: c.sdp_mid,
                        sdp_mline_index: c.sdp_mline_index,
                        ..Default::default()
                    };
                    if let Err(err) = self.pc.add_ice_candidate(init).await {
                        tracing::debug!(%err, "ignoring a remote candidate");
                    }
                    Vec::new()
                }
                Action::Send(to, payload) => {
                    tracing::debug!(%to, kind = payload.kind(), "signal out");
                    if self
                        .signaling
                        .send(ClientMessage::Signal { to, payload })
                        .await
                        .is_err()
                    {
                        tracing::debug!("signaling is gone");
                    }
                    Vec::new()
                }
                Action::ResendOffer => match self.local_sdp().await {
                    Ok(sdp) => {
                        tracing::info!("no answer to our offer yet; sending it again");
                        self.neg.resend_offer(sdp)
                    }
                    Err(err) => {
                        tracing::debug!(%err, "no offer to send again");
                        Vec::new()
                    }
                },
                Action::PeerLeft => return Flow::PeerLeft,
                Action::GiveUp => return Flow::GaveUp,
                Action::RestartIce => {
                    tracing::info!("restarting ICE");
                    self.ice_restart_next = true;
                    self.stats.lock().stats.ice.restarts += 1;
                    // Fresh relay credentials for the gathering to come (the old ones may have
                    // expired); the answer updates the connection's ICE servers.
                    if self.uses_turn
                        && self
                            .signaling
                            .send(ClientMessage::IceServers)
                            .await
                            .is_err()
                    {
                        tracing::debug!("signaling is gone");
                    }
                    Vec::new()
                }
                Action::Notice(text) => {
                    self.emit(SessionEvent::Warning(text)).await;
                    Vec::new()
                }
            };
            queue.extend(next);
        }
        Flow::Continue
    }

    /// Sets a remote description that parsed (or says why it did not).
    async fn set_remote(
        &self,
        parsed: Result<RTCSessionDescription, webrtc::error::Error>,
    ) -> Result<(), CallError> {
        self.pc.set_remote_description(parsed?).await?;
        Ok(())
    }

    /// Creates our offer (and, unless either side has already, the data channels it carries) and
    /// sets it.
    async fn make_offer(&mut self) -> Result<String, CallError> {
        if !self.channels_created {
            self.channels_created = true;
            for label in [CONTROL_LABEL, FILE_LABEL] {
                let dc = self.pc.create_data_channel(label, None).await?;
                watch_channel(dc, self.link_events.clone());
            }
        }
        let options = std::mem::take(&mut self.ice_restart_next)
            .then_some(RTCOfferOptions { ice_restart: true });
        let offer = self.pc.create_offer(options).await?;
        self.pc.set_local_description(offer).await?;
        self.local_sdp().await
    }

    /// Our answer, as sent. webrtc-rs answers every offer with its default DTLS role, also in a
    /// renegotiation (an ICE restart) where the role is long settled; it keeps its running
    /// transport whatever the answer says, but a browser refuses an answer that would swap the
    /// roles. So the answer sent states the role we really have.
    async fn make_answer(&mut self) -> Result<String, CallError> {
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        let sdp = self.local_sdp().await?;
        match self.dtls_server {
            None => {
                self.dtls_server = description::dtls_setup(&sdp).map(|setup| setup == "passive");
                Ok(sdp)
            }
            Some(server) => Ok(description::with_dtls_setup(
                &sdp,
                if server { "passive" } else { "active" },
            )),
        }
    }

    async fn local_sdp(&self) -> Result<String, CallError> {
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| CallError::WebRtc("no local description after setting one".into()))
    }
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

/// Where a negotiated local track sends: its SSRC and payload type.
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

/// The tracks we send on.
struct LocalTracks {
    video: Arc<TrackLocalStaticSample>,
    audio: Option<Arc<TrackLocalStaticSample>>,
}

impl LocalTracks {
    /// Always a video track to send on, even without a camera: screen sharing can start any time
    /// and must not need a renegotiation. Without a microphone, audio is receive-only.
    async fn add(pc: &Peer, with_audio: bool) -> Result<Self, CallError> {
        let stream_tag = rand::random::<u32>();
        let video = add_local_track(pc, RtpCodecKind::Video, stream_tag).await?;
        let audio = if with_audio {
            Some(add_local_track(pc, RtpCodecKind::Audio, stream_tag).await?)
        } else {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            };
            pc.add_transceiver_from_kind(RtpCodecKind::Audio, Some(init))
                .await?;
            None
        };
        Ok(Self { video, audio })
    }
}

async fn run(
    config: SessionConfig,
    io: MediaIo,
    events: EventSender,
    commands: mpsc::Receiver<SessionCommand>,
    stats: StatsHandle,
) -> Result<Ended, CallError> {
    let _watchdog = RuntimeWatchdog::start(tokio::runtime::Handle::current(), {
        let stats = stats.clone();
        move |stall| {
            let mut c = stats.lock();
            let runtime = &mut c.stats.runtime;
            runtime.stalls += 1;
            runtime.longest_stall_ms = runtime.longest_stall_ms.max(stall.as_secs_f64() * 1e3);
        }
    })
    .inspect_err(|err| tracing::warn!(%err, "no runtime watchdog"))
    .ok();
    let (mut signaling, joined) = SignalingClient::join(
        &config.server_url,
        config.room.as_ref(),
        &config.name,
        &config.server_trust,
    )
    .await?;
    let outcome = in_room(config, io, events, commands, stats, &mut signaling, joined).await;
    // However the call ended, our seat is given up now, not held for a resume that will not come.
    signaling.leave().await;
    outcome
}

/// The call, once we are in the room.
async fn in_room(
    config: SessionConfig,
    io: MediaIo,
    events: EventSender,
    commands: mpsc::Receiver<SessionCommand>,
    stats: StatsHandle,
    signaling: &mut SignalingClient,
    joined: Joined,
) -> Result<Ended, CallError> {
    {
        let mut c = stats.lock();
        c.stats.ms_to.signaling = Some(c.ms_now());
        c.stats.room = joined.room.to_string();
    }
    tracing::info!(room = %joined.room, me = %joined.me, "joined");
    events
        .emit(SessionEvent::Joined {
            room: joined.room.clone(),
            me: joined.me,
        })
        .await;

    let mut ice_servers = joined.ice_servers.clone();
    ice_servers.extend(config.extra_ice_servers.iter().cloned());
    let network = NetworkSettings {
        ice_servers,
        relay_only: config.relay_only,
        bind: config.bind.clone(),
    };
    let (peer_tx, peer_rx) = mpsc::channel::<PeerEvent>(256);
    let (pc, bwe) = peer::build(&network, peer_tx).await?;

    let (error_tx, error_rx) = mpsc::channel::<String>(64);
    let settings = MediaSettings {
        video: config.video,
        audio_bitrate_bps: config.audio_bitrate_bps,
        apm: config.apm,
        test: config.test,
    };
    let (media, problem) = MediaEngine::new(io, settings, bwe.clone(), stats.clone(), error_tx);
    if let Some(problem) = problem {
        events.emit(SessionEvent::Warning(problem)).await;
    }
    let tracks = LocalTracks::add(&pc, media.has_mic()).await?;

    let (link_tx, link_rx) = mpsc::channel::<LinkEvent>(256);
    let link = DataLink::new(
        config.receive_dir.clone(),
        FilePolicy {
            auto_accept: config.auto_accept_files,
            max_bytes: config.max_file_bytes,
        },
        link_tx.clone(),
        stats.clone(),
    );
    let negotiation = Negotiation {
        pc: pc.clone(),
        neg: Negotiator::new(joined.me),
        signaling: signaling.sender(),
        channels_created: false,
        events: events.clone(),
        link_events: link_tx,
        relay_missing: network.relay_only && !peer::has_turn(&network),
        ice_restart_next: false,
        uses_turn: peer::has_turn(&network),
        dtls_server: None,
        stats: stats.clone(),
    };
    let mut call = CallLoop {
        config,
        network,
        stats,
        pc,
        tracks,
        media,
        link,
        negotiation,
        ever_connected: false,
        connected: false,
        lost_at: None,
        bwe,
        sas_settled: false,
        video_shown: true,
    };
    let outcome = call
        .run(joined, signaling, peer_rx, link_rx, error_rx, commands)
        .await;
    call.stats.lock().call_ended();
    call.teardown().await;
    outcome
}

/// The running call: everything the event loop dispatches to.
struct CallLoop {
    config: SessionConfig,
    network: NetworkSettings,
    stats: StatsHandle,
    pc: Peer,
    tracks: LocalTracks,
    media: MediaEngine,
    link: DataLink,
    negotiation: Negotiation,
    ever_connected: bool,
    connected: bool,
    /// When the connection dropped, while it is down.
    lost_at: Option<Instant>,
    /// The congestion controller's published state.
    bwe: Arc<BweShared>,
    /// The security code was shown (or its failure reported).
    sas_settled: bool,
    /// The person sees the other side's video (`SessionCommand::SetVideoShown`).
    video_shown: bool,
}

/// What one event means for the loop.
type Step = Option<Result<Ended, CallError>>;

impl CallLoop {
    // `&mut self`, not `&self`: the loop's future must be `Send`, and the devices it owns are not
    // `Sync`.
    async fn emit(&mut self, event: SessionEvent) {
        self.negotiation.emit(event).await;
    }

    async fn run(
        &mut self,
        joined: Joined,
        signaling: &mut SignalingClient,
        mut peer_rx: mpsc::Receiver<PeerEvent>,
        mut link_rx: mpsc::Receiver<LinkEvent>,
        mut error_rx: mpsc::Receiver<String>,
        mut commands: mpsc::Receiver<SessionCommand>,
    ) -> Result<Ended, CallError> {
        // Whoever arrives second offers.
        if let Some(peer) = joined.peers.first() {
            self.emit(SessionEvent::PeerJoined {
                name: peer.name.clone(),
            })
            .await;
            let actions = self.negotiation.neg.peer_arrived(peer.id, true);
            if let Some(outcome) = self.carry_out(actions).await {
                return outcome;
            }
        }
        let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
        // Restarts are timed by the negotiator; this only tells it the time (and looks for a
        // change of the machine's addresses, which restarts at once).
        let mut restart_tick = tokio::time::interval(RESTART_TICK);
        restart_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut addresses = usable_addresses(signaling.server_addr());
        let mut signaling_alive = true;
        loop {
            let step: Step = tokio::select! {
                msg = signaling.recv(), if signaling_alive => match msg {
                    Ok(SignalingEvent::Message(msg)) => self.on_server(msg).await,
                    Ok(SignalingEvent::Lost(reason)) => {
                        self.emit(SessionEvent::Warning(format!(
                            "the connection to the signaling server dropped ({reason}); reconnecting, the call goes on"
                        )))
                        .await;
                        None
                    }
                    Ok(SignalingEvent::Resumed) => {
                        self.emit(SessionEvent::Warning(
                            "back on the signaling server".into(),
                        ))
                        .await;
                        let actions = self.negotiation.neg.signaling_back(Instant::now());
                        self.carry_out(actions).await
                    }
                    Err(err) => {
                        signaling_alive = false;
                        self.on_signaling_lost(err).await
                    }
                },
                event = peer_rx.recv() => match event {
                    Some(event) => self.on_peer(event).await,
                    None => Some(Err(CallError::WebRtc("the connection stopped".into()))),
                },
                Some(event) = link_rx.recv() => {
                    self.on_link(event).await;
                    None
                }
                Some(problem) = error_rx.recv() => {
                    self.emit(SessionEvent::Warning(problem)).await;
                    None
                }
                _ = stats_tick.tick(), if self.ever_connected => {
                    self.refresh_ice_stats().await;
                    fill_bwe_stats(&self.bwe, &self.stats);
                    self.stats.lock().tick_second();
                    // What our decoder keeps up with, to the sender (when it changed).
                    self.ask_for_video().await;
                    None
                }
                _ = restart_tick.tick() => {
                    let now = Instant::now();
                    let mut actions = self.negotiation.neg.tick(now);
                    let seen = usable_addresses(signaling.server_addr());
                    if seen != addresses {
                        // Empty also while there is no route to the server.
                        tracing::info!(?seen, "the machine's usable addresses changed");
                        let offline = seen.is_empty();
                        addresses = seen;
                        // Without an address a new socket could not connect: wait for one.
                        if !offline {
                            signaling.reconnect_now();
                        }
                        actions.extend(self.negotiation.neg.addresses_changed(now, offline));
                    }
                    self.carry_out(actions).await
                }
                command = commands.recv() => self.on_command(command).await,
            };
            if let Some(outcome) = step {
                return outcome;
            }
        }
    }

    async fn on_server(&mut self, msg: ServerMessage) -> Step {
        let remote = self.negotiation.neg.remote();
        let actions = match msg {
            ServerMessage::PeerJoined { peer } if remote.is_none() => {
                self.emit(SessionEvent::PeerJoined { name: peer.name })
                    .await;
                self.negotiation
                    .neg
                    .peer_arrived(peer.id, self.config.eager_offer)
            }
            ServerMessage::PeerLeft { id } if Some(id) == remote => {
                self.emit(SessionEvent::PeerLeft).await;
                return Some(Ok(Ended::PeerLeft));
            }
            ServerMessage::PeerAway { id } if Some(id) == remote => {
                self.emit(SessionEvent::Warning(
                    "the other person's signaling connection dropped; the call goes on".into(),
                ))
                .await;
                Vec::new()
            }
            ServerMessage::PeerBack { id } if Some(id) == remote => {
                tracing::info!("the other person is back on the signaling server");
                self.negotiation.neg.signaling_back(Instant::now())
            }
            ServerMessage::Signal { from, payload } => {
                tracing::debug!(%from, kind = payload.kind(), "signal in");
                self.negotiation.neg.on_signal(from, payload)
            }
            ServerMessage::IceServers { ice_servers } => {
                // The server hands out a relay once someone else is in the room (and fresh
                // credentials when asked): use them for the gathering to come.
                let mut servers = ice_servers;
                servers.extend(self.config.extra_ice_servers.iter().cloned());
                self.network.ice_servers = servers;
                if let Err(err) = peer::update_ice_servers(&self.pc, &self.network).await {
                    tracing::warn!(%err, "could not use the new ICE servers");
                }
                self.negotiation.relay_missing =
                    self.network.relay_only && !peer::has_turn(&self.network);
                Vec::new()
            }
            ServerMessage::Error { message, .. } => {
                self.emit(SessionEvent::Warning(message)).await;
                Vec::new()
            }
            _ => Vec::new(),
        };
        match self.negotiation.execute(actions).await {
            Flow::Continue => None,
            Flow::NoRelay => Some(Err(no_relay())),
            Flow::PeerLeft => {
                self.emit(SessionEvent::PeerLeft).await;
                Some(Ok(Ended::PeerLeft))
            }
            Flow::GaveUp => Some(Err(self.ice_failed())),
        }
    }

    async fn on_signaling_lost(&mut self, err: CallError) -> Step {
        if !self.ever_connected {
            return Some(Err(err));
        }
        // The call is peer to peer: it goes on without the server.
        self.emit(SessionEvent::Warning(format!("{err}; the call continues")))
            .await;
        None
    }

    async fn on_peer(&mut self, event: PeerEvent) -> Step {
        let actions = match event {
            PeerEvent::LocalCandidate(c) => self.negotiation.neg.local_candidate(Candidate {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_mline_index,
            }),
            PeerEvent::GatheringComplete => self.negotiation.neg.gathering_complete(),
            PeerEvent::State(state) => return self.on_connection_state(state).await,
            PeerEvent::Track(track) => {
                match track.kind().await {
                    RtpCodecKind::Video => self.media.receive_video(track),
                    RtpCodecKind::Audio => self.media.receive_audio(track),
                    _ => {}
                }
                Vec::new()
            }
            PeerEvent::DataChannel(dc) => {
                self.negotiation.channels_created = true;
                watch_channel(dc, self.negotiation.link_events.clone());
                Vec::new()
            }
        };
        self.carry_out(actions).await
    }

    /// Carries out the negotiator's actions; what they mean for the call.
    async fn carry_out(&mut self, actions: Vec<Action>) -> Step {
        match self.negotiation.execute(actions).await {
            Flow::Continue => None,
            Flow::PeerLeft => Some(Ok(Ended::PeerLeft)),
            Flow::NoRelay => Some(Err(no_relay())),
            Flow::GaveUp => Some(Err(self.ice_failed())),
        }
    }

    fn ice_failed(&self) -> CallError {
        CallError::IceFailed {
            hint: if self.network.relay_only {
                " through the TURN relay"
            } else {
                "; a TURN server may be needed"
            },
        }
    }

    async fn on_connection_state(&mut self, state: RTCPeerConnectionState) -> Step {
        tracing::debug!(?state, "connection state");
        match state {
            RTCPeerConnectionState::Connected => {
                self.connected = true;
                if !self.ever_connected {
                    self.ever_connected = true;
                    self.first_connected().await;
                } else if let Some(since) = self.lost_at.take() {
                    // Back after a drop: say so (the window leaves "reconnecting").
                    let security_code = {
                        let mut c = self.stats.lock();
                        c.stats.ice.reconnections += 1;
                        c.stats.ice.reconnecting_ms += since.elapsed().as_secs_f64() * 1000.0;
                        c.stats.security_code.clone()
                    };
                    self.emit(SessionEvent::Connected { security_code }).await;
                }
                let actions = self
                    .negotiation
                    .neg
                    .link_changed(Link::Connected, Instant::now());
                self.carry_out(actions).await
            }
            RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed
                if self.ever_connected =>
            {
                if self.connected {
                    self.connected = false;
                    self.lost_at = Some(Instant::now());
                    self.emit(SessionEvent::Reconnecting).await;
                }
                let link = if state == RTCPeerConnectionState::Failed {
                    Link::Failed
                } else {
                    Link::Disconnected
                };
                let actions = self.negotiation.neg.link_changed(link, Instant::now());
                self.carry_out(actions).await
            }
            RTCPeerConnectionState::Failed => Some(Err(self.ice_failed())),
            RTCPeerConnectionState::Closed => Some(Ok(Ended::PeerLeft)),
            _ => None,
        }
    }

    /// Reads the selected ICE pair into the stats and hands its round trip (ms), when measured, to
    /// the media engine (NACK timing, the video's resend wait).
    async fn refresh_ice_stats(&mut self) -> Option<f64> {
        fill_ice_stats(&self.pc, &self.stats).await;
        let rtt_ms = self.stats.lock().stats.ice.rtt_ms;
        if let Some(rtt_ms) = rtt_ms {
            self.media.set_rtt_ms(rtt_ms);
        }
        rtt_ms
    }

    /// Connected for the first time: start sending, and show the security code.
    async fn first_connected(&mut self) {
        {
            let mut c = self.stats.lock();
            c.stats.ms_to.ice_connected = Some(c.ms_now());
        }
        // ICE measured the path's round trip before any media is sent: on a long path the
        // estimate starts lower (`bwe::start_rate`), so the first second does not flood it.
        if let Some(rtt_ms) = self.refresh_ice_stats().await {
            let start = start_rate(Duration::from_secs_f64(rtt_ms / 1000.0));
            if start < INITIAL_BPS {
                tracing::debug!(
                    rtt_ms,
                    start_bps = start,
                    "a long path: the estimate starts lower"
                );
                self.bwe.start_at(start);
            }
        }
        let video = track_out(&self.pc, &self.tracks.video).await;
        if video.is_none() {
            self.emit(SessionEvent::Warning(
                "video could not be negotiated".into(),
            ))
            .await;
        }
        let audio = match &self.tracks.audio {
            Some(track) => {
                let out = track_out(&self.pc, track).await;
                if out.is_none() {
                    self.emit(SessionEvent::Warning(
                        "audio could not be negotiated".into(),
                    ))
                    .await;
                }
                out
            }
            None => None,
        };
        if self.media.start_sending(video, audio) {
            self.emit(SessionEvent::ScreenSharing(true)).await;
        }
        // The security code follows once the data channel's exchange is done (`check_sas`).
        let security_code = self.stats.lock().stats.security_code.clone();
        self.emit(SessionEvent::Connected { security_code }).await;
    }

    /// Shows the security code once the commit-then-reveal exchange is done, from the
    /// certificate DTLS verified and our own (or says why there is none).
    async fn check_sas(&mut self) {
        if self.sas_settled {
            return;
        }
        let event = match self.link.sas_state().clone() {
            SasState::Pending => return,
            SasState::Failed(err) => SessionEvent::Warning(format!(
                "no security code: {err}; someone may be in the middle of this call"
            )),
            SasState::Done(ours, theirs) => match verified_fingerprints(&self.pc).await {
                Some((local, remote)) => {
                    let code = security_code((&local, &ours), (&remote, &theirs));
                    self.stats.lock().stats.security_code = Some(code.clone());
                    SessionEvent::SecurityCode(code)
                }
                None => SessionEvent::Warning(
                    "no security code: the connection's certificates are unknown".into(),
                ),
            },
        };
        self.sas_settled = true;
        self.emit(event).await;
    }

    async fn on_link(&mut self, event: LinkEvent) {
        let notices = match event {
            LinkEvent::Open(dc) => self.link.opened(dc).await,
            LinkEvent::Control(text) => self.link.on_control(&text).await,
            LinkEvent::Chunk(data) => self.link.on_chunk(&data).await,
            LinkEvent::Hashed { id, path, result } => self.link.hashed(id, path, result),
            LinkEvent::SendProgress { id, sent, total } => self.link.send_progress(id, sent, total),
            LinkEvent::SendFailed { id, error } => self.link.send_failed(id, error).await,
            LinkEvent::Closed(label) => {
                tracing::debug!(%label, "data channel closed");
                Vec::new()
            }
        };
        self.notify(notices).await;
        self.check_sas().await;
        if let Some(limit) = self.link.take_video_limit() {
            // The other side's decoder, or its window: the video sender's ladder follows it from
            // the next frame.
            let max = self.bwe.set_receiver_limit(limit);
            tracing::debug!(max_pixel_rate = max, "the other side asks for at most");
            self.stats.lock().stats.video_send.receiver_max_pixel_rate = max;
        }
    }

    /// Asks the other side for at most what our decoder keeps up with, or for the least while
    /// the video is not shown; a repeat of the last ask is not sent.
    async fn ask_for_video(&mut self) {
        let decoder = self.bwe.decoder_asks_pixel_rate.load(Ordering::Relaxed);
        let ask = if self.video_shown {
            (decoder > 0).then_some(decoder)
        } else {
            Some(thread_load::MIN_ASK)
        };
        self.link.ask_video_limit(ask).await;
    }

    async fn notify(&mut self, notices: Vec<LinkNotice>) {
        for notice in notices {
            self.emit(SessionEvent::Data(notice)).await;
        }
    }

    async fn on_command(&mut self, command: Option<SessionCommand>) -> Step {
        match command {
            Some(SessionCommand::Chat(text)) => self.link.chat(text).await,
            Some(SessionCommand::SendFile { id, path }) => {
                let notices = self.link.offer_file(id, &path);
                self.notify(notices).await;
            }
            Some(SessionCommand::AcceptFile(id)) => {
                let notices = self.link.accept(id).await;
                self.notify(notices).await;
            }
            Some(SessionCommand::DeclineFile(id)) => self.link.decline(id).await,
            Some(SessionCommand::SetMicMuted(muted)) => self.media.set_mic_muted(muted),
            Some(SessionCommand::SetCameraOn(on)) => self.media.set_camera_on(on),
            Some(SessionCommand::ShareScreen(source)) => {
                let sharing = source.is_some();
                if self.media.share_screen(source) {
                    self.emit(SessionEvent::ScreenSharing(sharing)).await;
                } else if sharing {
                    self.emit(SessionEvent::Warning(
                        "screen sharing starts once the call is connected".into(),
                    ))
                    .await;
                }
            }
            Some(SessionCommand::SwitchMic(source)) => {
                let switched = self.media.switch_mic(source);
                self.switch_problem(switched, "microphone").await;
            }
            Some(SessionCommand::SwitchSpeaker(sink)) => {
                let switched = self.media.switch_speaker(sink);
                self.switch_problem(switched, "speaker").await;
            }
            Some(SessionCommand::SwitchCamera(source)) => {
                let switched = self.media.switch_camera(source);
                self.switch_problem(switched, "camera").await;
            }
            Some(SessionCommand::SetVideoShown(shown)) => {
                self.video_shown = shown;
                self.stats.lock().stats.video_recv.not_shown = !shown;
                // At once: the person is waiting for the picture to come back.
                self.ask_for_video().await;
            }
            Some(SessionCommand::Hangup) | None => {
                let actions = self.negotiation.neg.hang_up();
                self.negotiation.execute(actions).await;
                return Some(Ok(Ended::HungUp));
            }
        }
        None
    }

    /// Tells the person when the device they chose is not used now.
    async fn switch_problem(&mut self, switched: Switched, device: &str) {
        let warning = match switched {
            Switched::Now => return,
            Switched::NotInThisCall => format!(
                "This call started without a {device}; the one you chose is used from the next call."
            ),
            Switched::Busy => format!("The {device} could not be switched just now; try again."),
        };
        self.emit(SessionEvent::Warning(warning)).await;
    }

    /// Ends the call: the last statistics, the connection closed, and every media thread joined
    /// (so the sinks are finished when the session's task ends).
    async fn teardown(mut self) {
        self.link.close().await;
        fill_ice_stats(&self.pc, &self.stats).await;
        if let Err(err) = self.pc.close().await {
            tracing::debug!(%err, "closing the connection");
        }
        let mut media = self.media;
        if let Err(err) = tokio::task::spawn_blocking(move || media.stop()).await {
            tracing::error!(%err, "stopping the media threads failed");
        }
    }
}

/// (our certificate's fingerprint, the one the remote side proved it holds in the DTLS
/// handshake).
async fn verified_fingerprints(pc: &Peer) -> Option<(String, String)> {
    let local = first_sha256_fingerprint(&pc.local_description().await?.sdp)?;
    let dtls = pc.sctp().await?.transport();
    let chain = dtls.get_remote_certificates().await.ok()?;
    Some((local, certificate_fingerprint(chain.first()?)))
}

/// How often the restart timers and the machine's addresses are looked at.
const RESTART_TICK: Duration = Duration::from_millis(250);

/// The machine's usable addresses (not loopback or link-local), sorted: a change means the
/// candidates we gave may be stale.
fn local_addresses() -> Vec<std::net::IpAddr> {
    let mut addrs: Vec<std::net::IpAddr> = rtc::shared::ifaces::ifaces()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.addr.map(|a| a.ip()))
        .filter(|ip| {
            !ip.is_loopback()
                && !ip.is_unspecified()
                && !matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// The machine's addresses as a call can use them: none while it has no route to the signaling
/// server. A machine that has just joined a network has its address a moment before its default
/// route (a DHCP client sets them one after the other); an ICE restart made in that moment
/// gathers no server-reflexive candidate (its STUN request cannot leave), so behind a NAT the
/// other peer has no address to answer to, and the call waits for the next restart.
fn usable_addresses(server: Option<std::net::SocketAddr>) -> Vec<std::net::IpAddr> {
    let addrs = local_addresses();
    match server {
        Some(server) if !addrs.is_empty() && !routable(server) => {
            tracing::debug!(?addrs, %server, "no route to the signaling server");
            Vec::new()
        }
        _ => addrs,
    }
}

/// Whether the machine has a route to `to`. A UDP socket's `connect` looks the route up and
/// sends nothing.
fn routable(to: std::net::SocketAddr) -> bool {
    let any: std::net::SocketAddr = match to {
        std::net::SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        std::net::SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(any)
        .and_then(|socket| socket.connect(to))
        .is_ok()
}

fn no_relay() -> CallError {
    CallError::Refused(
        "--relay-only, but the signaling server offers no TURN relay (give one with --ice-server)"
            .into(),
    )
}

/// The congestion controller's state, into the stats.
fn fill_bwe_stats(bwe: &BweShared, stats: &StatsHandle) {
    let b = bwe.snapshot();
    stats.lock().stats.bwe = BweStats {
        target_kbps: b.target_bps as f64 / 1000.0,
        delay_based_kbps: b.delay_bps as f64 / 1000.0,
        loss_based_kbps: b.loss_bps as f64 / 1000.0,
        limited_by: match b.limited_by() {
            Limit::Delay => "delay",
            Limit::Loss => "loss",
        },
        loss_fraction: b.loss_fraction,
        feedback_rtt_ms: b.feedback_rtt.map(|d| d.as_secs_f64() * 1000.0),
        feedback_batches: b.feedback_batches,
        pacer_rate_kbps: b.pacer_rate_bps as f64 / 1000.0,
        pacer_queue_ms: b.pacer_queue_ms,
        pacer_dropped: b.pacer_dropped,
        packets_reported: bwe
            .packets_reported
            .load(std::sync::atomic::Ordering::Relaxed),
        packets_lost: bwe.packets_lost.load(std::sync::atomic::Ordering::Relaxed),
        retransmissions: bwe
            .retransmissions
            .load(std::sync::atomic::Ordering::Relaxed),
        resends_refused: bwe
            .resends_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        nack_requests: bwe.nack_requests.load(std::sync::atomic::Ordering::Relaxed),
    };
}

/// The candidate pair ICE selected, from the transport under the data channels.
async fn selected_pair(pc: &Peer) -> Option<rtc::peer_connection::transport::RTCIceCandidatePair> {
    let sctp = pc.sctp().await?;
    let ice = sctp.transport().ice_transport();
    ice.get_selected_candidate_pair().await.ok().flatten()
}

/// The selected candidate pair: types and addresses on both ends and the round-trip time.
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
    // The selected pair as ICE holds it names both ends whatever their origin; the stats report
    // only knows remote candidates that were trickled (not peer-reflexive ones, nor those inside
    // a description), so it is the fallback.
    let selected = selected_pair(pc).await;
    let mut c = stats.lock();
    match selected {
        Some(pair) => {
            let (local, remote) = (pair.local(), pair.remote());
            c.stats.ice.local_candidate_type = Some(local.typ.to_string());
            c.stats.ice.remote_candidate_type = Some(remote.typ.to_string());
            c.stats.ice.local_address = Some(format!("{}:{}", local.address, local.port));
            c.stats.ice.remote_address = Some(format!("{}:{}", remote.address, remote.port));
        }
        None => {
            c.stats.ice.local_candidate_type = candidate_type(&pair.local_candidate_id);
            c.stats.ice.remote_candidate_type = candidate_type(&pair.remote_candidate_id);
        }
    }
    if pair.current_round_trip_time > 0.0 {
        c.stats.ice.rtt_ms = Some(pair.current_round_trip_time * 1000.0);
    }
}
