//! Why a call could not start or ended badly, phrased for the person using Confab.

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach the signaling server at {url}: {reason}")]
    ServerUnreachable { url: String, reason: String },
    #[error("the signaling server closed the connection: {0}")]
    ServerClosed(String),
    #[error("room {0} is full")]
    RoomFull(String),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("could not connect to the other person (ICE failed){hint}")]
    IceFailed { hint: &'static str },
    #[error("WebRTC: {0}")]
    WebRtc(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<webrtc::error::Error> for CallError {
    fn from(e: webrtc::error::Error) -> Self {
        Self::WebRtc(e.to_string())
    }
}
