//! Moving media and messages between two peers: the signaling client, the WebRTC PeerConnection
//! (negotiation, trickle ICE), RTP send and receive with jitter buffers, the data channel (chat and
//! files), and call statistics. No device or UI code: the headless `join` and the window drive the
//! same session.

pub mod audio_jitter;
pub mod bwe;
pub mod collector;
pub mod data;
pub mod data_link;
pub mod depacketize;
pub mod description;
pub mod device_swap;
#[cfg(test)]
mod dtls_tests;
pub mod error;
pub mod frame_assembler;
#[cfg(test)]
mod ice_tests;
pub mod keyframe_forwarder;
pub mod ladder;
pub mod media_engine;
pub mod media_recv;
pub mod media_send;
pub mod nack;
pub mod negotiator;
pub mod pacer;
pub mod peer;
pub mod security;
pub mod seq;
pub mod server_trust;
pub mod session;
pub mod signaling_client;
pub mod stats;
pub mod sync;
pub mod thread_load;
pub mod video_delay;
pub mod watchdog;

pub use error::CallError;
