//! Building the WebRTC PeerConnection: codecs (H.264 constrained baseline, packetization mode 1;
//! Opus with in-band FEC), interceptors (NACK, RTCP reports, send-side congestion control over
//! TWCC with the app's estimator and pacer, keyframe requests to the application), ICE settings,
//! and an event handler that turns callbacks into `PeerEvent`s on a bounded channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use confab_protocol::IceServer;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{NackResponderBuilder, Slot};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_congestion_control, configure_rtcp_reports, CongestionFeedback,
};
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, Registry, SettingEngineBuilder,
};

use super::bwe::{BweShared, Estimator, Published, INITIAL_BPS};
use super::keyframe_forwarder::{self, KeyframeForwarder};
use super::nack::NackRequester;
use super::pacer::AppPacer;
use super::sync::{self, SyncReports};
use super::CallError;

/// ICE checks each candidate pair this often (rtc-ice's default is 200 ms): calls connect in tens
/// of ms ...
pub(crate) const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// ... at most this many times (1 s); a check from the other side revives a pair that ran out
/// (`vendor/rtc-ice`, `ice_tests.rs`).
pub(crate) const ICE_MAX_CHECKS: u16 = 50;

/// H.264 as WebRTC peers (Chromium among them) offer it.
pub fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            .to_owned(),
        rtcp_feedback: vec![RTCPFeedback {
            typ: "ccm".to_owned(),
            parameter: "fir".to_owned(),
        }],
    }
}

pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// What the PeerConnection reports, in order.
#[derive(Clone)]
pub enum PeerEvent {
    LocalCandidate(RTCIceCandidateInit),
    GatheringComplete,
    State(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
    DataChannel(Arc<dyn DataChannel>),
}

struct Handler {
    tx: mpsc::Sender<PeerEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.tx.send(PeerEvent::LocalCandidate(init)).await;
            }
            Err(err) => tracing::warn!(%err, "cannot encode a local candidate"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.tx.send(PeerEvent::GatheringComplete).await;
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.tx.send(PeerEvent::State(state)).await;
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(PeerEvent::Track(track)).await;
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.tx.send(PeerEvent::DataChannel(channel)).await;
    }
}

/// How to reach the other peer.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    pub ice_servers: Vec<IceServer>,
    /// Only relay candidates (force TURN).
    pub relay_only: bool,
    /// Local UDP addresses to gather host candidates on.
    pub bind: Vec<SocketAddr>,
}

impl NetworkSettings {
    /// Every interface plus loopback (so two peers on one machine always find each other).
    pub fn default_bind() -> Vec<SocketAddr> {
        vec![
            "0.0.0.0:0".parse().expect("valid"),
            "127.0.0.1:0".parse().expect("valid"),
        ]
    }
}

pub type Peer = Arc<dyn PeerConnection>;

/// Whether any of the ICE servers is a TURN relay.
pub fn has_turn(settings: &NetworkSettings) -> bool {
    settings
        .ice_servers
        .iter()
        .flat_map(|s| &s.urls)
        .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
}

fn rtc_ice_servers(settings: &NetworkSettings) -> Vec<RTCIceServer> {
    settings
        .ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect()
}

/// Gives the connection new ICE servers (fresh TURN credentials, or the relay the server hands
/// out once someone else is in the room): used by the gathering that follows.
pub async fn update_ice_servers(pc: &Peer, settings: &NetworkSettings) -> Result<(), CallError> {
    let mut config = RTCConfigurationBuilder::new().with_ice_servers(rtc_ice_servers(settings));
    if settings.relay_only && has_turn(settings) {
        config = config.with_ice_transport_policy(RTCIceTransportPolicy::Relay);
    }
    pc.set_configuration(config.build()).await?;
    Ok(())
}

/// Data channels are sent in bounded chunks; `send` waits once this much is buffered.
const DATA_CHANNEL_BUFFER: usize = 1024 * 1024;

/// Builds the PeerConnection. mDNS (to resolve browsers' `.local` host candidates) needs a
/// multicast-capable interface; where there is none (a bare network namespace), it is turned off.
/// The `BweShared` is where this connection's congestion controller and pacer publish the
/// estimate, the loss, the feedback RTT and the pacer queue (see `bwe::BweShared`).
pub async fn build(
    settings: &NetworkSettings,
    events: mpsc::Sender<PeerEvent>,
) -> Result<(Peer, Arc<BweShared>), CallError> {
    match build_with(settings, events.clone(), MulticastDnsMode::QueryOnly).await {
        Ok(pc) => Ok(pc),
        Err(err) => {
            tracing::debug!(%err, "retrying without mDNS");
            build_with(settings, events, MulticastDnsMode::Disabled).await
        }
    }
}

async fn build_with(
    settings: &NetworkSettings,
    events: mpsc::Sender<PeerEvent>,
    mdns: MulticastDnsMode,
) -> Result<(Peer, Arc<BweShared>), CallError> {
    let mut media = MediaEngine::default();
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: h264_codec(),
            payload_type: 102,
        },
        RtpCodecKind::Video,
    )?;
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    // register_default_interceptors' set, but with our NACK requester (nack.rs): a lost video
    // packet is asked for at once and again only after a round trip, so the frame it belongs to
    // is late, not lost, and a lossy link is not flooded with requests and resends.
    for parameter in ["", "pli"] {
        media.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    let bwe = Arc::new(BweShared::default());
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(Slot::NackGenerator, NackRequester::new(bwe.clone()))
        .with(
            Slot::from(keyframe_forwarder::SLOT),
            KeyframeForwarder::default(),
        )
        .with(Slot::from(sync::SLOT), SyncReports::new(bwe.clone()));
    let registry = configure_rtcp_reports(registry);
    // Send-side congestion control over transport-wide feedback, both ways: our RTP carries the
    // TWCC extension and we send feedback for what we receive. The estimator is ours (it recovers
    // after a backoff, see bwe.rs), and the helper's pacer (1 Mbit/s, one FIFO of 4096 packets,
    // no audio priority) is replaced by ours at the same slot (rtc logs one warning for that).
    let registry = configure_congestion_control(
        registry,
        Published::new(Estimator::default(), bwe.clone()),
        CongestionFeedback::Twcc,
        &mut media,
    )?
    .with(Slot::Pacer, AppPacer::new(INITIAL_BPS, bwe.clone()));

    let mut config = RTCConfigurationBuilder::new().with_ice_servers(rtc_ice_servers(settings));
    // Relay-only needs a TURN server, which the signaling server hands out only once someone else
    // is in the room: until then nothing is gathered, and the session refuses to negotiate
    // without one (`has_turn`).
    if settings.relay_only && has_turn(settings) {
        config = config.with_ice_transport_policy(RTCIceTransportPolicy::Relay);
    }
    let setting_engine = SettingEngineBuilder::new()
        .with_multicast_dns_mode(mdns)
        .with_include_loopback_candidate(settings.bind.iter().any(|a| a.ip().is_loopback()))
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_CHECKS))
        // rtc-ice waits 500 ms before it accepts a server-reflexive pair, 1 s for a peer-reflexive
        // one and 2 s for a relay, in case a better pair turns up. With checks every 20 ms a
        // better pair shows up within a round trip or two, so shorter waits keep the preference
        // (a direct pair that works by then still wins) and a TURN call connects in well under
        // a second instead of after 2-4 s.
        .with_srflx_acceptance_min_wait(Some(Duration::from_millis(150)))
        .with_prflx_acceptance_min_wait(Some(Duration::from_millis(250)))
        .with_relay_acceptance_min_wait(Some(Duration::from_millis(400)))
        // An ICE restart binds new sockets on the interfaces there are now: after an address
        // change the old ones name an address the machine no longer has.
        .with_discard_local_candidates_during_ice_restart(true)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config.build())
        .with_media_engine(media)
        .with_setting_engine(setting_engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { tx: events }))
        .with_udp_addrs(settings.bind.clone())
        .with_data_channel_send_buffer_limit(DATA_CHANNEL_BUFFER)
        .build()
        .await?;
    Ok((Arc::new(pc), bwe))
}
