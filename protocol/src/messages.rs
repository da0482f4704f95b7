//! The signaling messages. Every message is one JSON object in one WebSocket text frame, tagged by
//! `"type"`. Peers are addressed by id, so rooms of more than two fit without a new protocol.
//!
//! A client sends `join` (with a room code, or without one to have the server make a room), then
//! `signal`s addressed to other peers; the server answers `welcome`, tells of `peer_joined` /
//! `peer_left`, relays `signal`s (stamping `from`), and reports problems with `error`.
//! TURN credentials are short-lived and handed out only to a member of a room with someone else
//! in it: in `welcome` when others are already there, else in an `ice_servers` message once
//! someone joins; a client asks for fresh ones (before an ICE restart) with `ice_servers`.
//! `welcome` carries a resume token: a client whose socket dropped reconnects with `resume` and
//! gets its seat and id back (the others heard `peer_away`, then `peer_back`; `peer_left` only
//! on a goodbye or when the grace period ends).

use serde::{Deserialize, Serialize};

use crate::RoomCode;

/// Bumped on any incompatible change; the server refuses a `join` with another major version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message either side accepts (text of one WebSocket message).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Display names are cut to this many characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A peer's id, unique on its server for the server's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer-{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id: PeerId,
    pub name: String,
}

/// An ICE server in the shape of the browser's `RTCIceServer`, so the web client can pass it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What one peer tells another through the server. The server relays it untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignalPayload {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    /// A trickled ICE candidate, in the browser's `RTCIceCandidateInit` shape.
    Candidate {
        candidate: String,
        #[serde(default, rename = "sdpMid", skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        #[serde(
            default,
            rename = "sdpMLineIndex",
            skip_serializing_if = "Option::is_none"
        )]
        sdp_mline_index: Option<u16>,
    },
    /// No more candidates will follow from this peer.
    EndOfCandidates,
    /// The sender is hanging up (it will also leave the room).
    Bye,
    /// The sender could not use the offer or answer it received (why, for the person to read).
    DescriptionError {
        message: String,
    },
}

impl SignalPayload {
    /// The kind of message, for logs (never the SDP or the candidate itself).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Offer { .. } => "offer",
            Self::Answer { .. } => "answer",
            Self::Candidate { .. } => "candidate",
            Self::EndOfCandidates => "end-of-candidates",
            Self::Bye => "bye",
            Self::DescriptionError { .. } => "description-error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Enter a room; with no `room`, the server creates one with a fresh code.
    Join {
        version: u32,
        #[serde(default)]
        room: Option<String>,
        #[serde(default)]
        name: Option<String>,
    },
    /// Relay `payload` to peer `to` in the same room.
    Signal { to: PeerId, payload: SignalPayload },
    /// Leave the room (closing the socket does the same).
    Leave,
    /// Application-level keepalive for clients that cannot send WebSocket pings; answered `pong`.
    Ping,
    /// Asks for fresh ICE servers (new short-lived TURN credentials), e.g. before an ICE restart;
    /// answered with `ice_servers`, or an `error` when alone in the room or over the rate limit.
    IceServers,
    /// Back after a dropped socket: the token from `welcome` gets the same seat and id (also
    /// from a restarted server with the same key); answered like `join`, with `welcome`.
    Resume { version: u32, token: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `join`: who you are, who is already there, and which ICE servers to use.
    Welcome {
        version: u32,
        room: RoomCode,
        you: PeerId,
        peers: Vec<PeerInfo>,
        ice_servers: Vec<IceServer>,
        /// Give it back in `resume` after a dropped socket.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    PeerJoined {
        peer: PeerInfo,
    },
    PeerLeft {
        id: PeerId,
    },
    /// The peer's socket dropped; its seat is kept for a grace period (the call may go on).
    PeerAway {
        id: PeerId,
    },
    /// The peer resumed after `peer_away`.
    PeerBack {
        id: PeerId,
    },
    Signal {
        from: PeerId,
        payload: SignalPayload,
    },
    Pong,
    /// Fresh ICE servers for this member: sent to those already in a room when the first other
    /// person joins (their `welcome` carried no TURN credentials) and in answer to `ice_servers`.
    IceServers {
        ice_servers: Vec<IceServer>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Machine-readable error kinds; `message` carries the human sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or JSON that is not a message of this protocol.
    BadMessage,
    /// A `type` this server does not know.
    UnknownType,
    TooLarge,
    BadRoomCode,
    RoomFull,
    /// `signal` addressed to a peer not in your room.
    UnknownPeer,
    /// `signal` or `leave` before `join`.
    NotInRoom,
    AlreadyInRoom,
    VersionMismatch,
    RateLimited,
    /// The server is shutting down.
    ServerShutdown,
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip_client(msg: ClientMessage, expected: serde_json::Value) {
        let text = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            expected
        );
        assert_eq!(serde_json::from_str::<ClientMessage>(&text).unwrap(), msg);
    }

    #[test]
    fn client_messages_have_a_stable_shape() {
        round_trip_client(
            ClientMessage::Join {
                version: 1,
                room: Some("kfq-wmzt-pxd".into()),
                name: Some("Ada".into()),
            },
            json!({"type": "join", "version": 1, "room": "kfq-wmzt-pxd", "name": "Ada"}),
        );
        round_trip_client(
            ClientMessage::Signal {
                to: PeerId(7),
                payload: SignalPayload::Candidate {
                    candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                },
            },
            json!({"type": "signal", "to": 7, "payload": {"kind": "candidate",
                "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
                "sdpMid": "0", "sdpMLineIndex": 0}}),
        );
        round_trip_client(ClientMessage::Leave, json!({"type": "leave"}));
        round_trip_client(ClientMessage::IceServers, json!({"type": "ice_servers"}));
        round_trip_client(
            ClientMessage::Resume {
                version: 1,
                token: "t".into(),
            },
            json!({"type": "resume", "version": 1, "token": "t"}),
        );
    }

    #[test]
    fn join_fields_are_optional() {
        let msg: ClientMessage = serde_json::from_str(r#"{"type":"join","version":1}"#).unwrap();
        assert_eq!(
            msg,
            ClientMessage::Join {
                version: 1,
                room: None,
                name: None
            }
        );
    }

    #[test]
    fn server_messages_have_a_stable_shape() {
        let msg = ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            room: RoomCode::parse("kfq-wmzt-pxd").unwrap(),
            you: PeerId(2),
            peers: vec![PeerInfo {
                id: PeerId(1),
                name: "Ada".into(),
            }],
            ice_servers: vec![IceServer {
                urls: vec!["stun:stun.example:3478".into()],
                username: None,
                credential: None,
            }],
            resume_token: None,
        };
        let value = serde_json::to_value(&msg).unwrap();
        assert_eq!(
            value,
            json!({"type": "welcome", "version": 1, "room": "kfq-wmzt-pxd", "you": 2,
                "peers": [{"id": 1, "name": "Ada"}],
                "ice_servers": [{"urls": ["stun:stun.example:3478"]}]})
        );
        assert_eq!(serde_json::from_value::<ServerMessage>(value).unwrap(), msg);
        assert_eq!(
            serde_json::to_value(ServerMessage::error(ErrorCode::RoomFull, "full")).unwrap(),
            json!({"type": "error", "code": "room_full", "message": "full"})
        );
        let fresh = ServerMessage::IceServers {
            ice_servers: vec![IceServer {
                urls: vec!["turn:t:3478".into()],
                username: Some("1700000600:kfq-wmzt-pxd/peer-2".into()),
                credential: Some("c".into()),
            }],
        };
        let value = serde_json::to_value(&fresh).unwrap();
        assert_eq!(
            value,
            json!({"type": "ice_servers", "ice_servers": [{"urls": ["turn:t:3478"],
                "username": "1700000600:kfq-wmzt-pxd/peer-2", "credential": "c"}]})
        );
        assert_eq!(
            serde_json::from_value::<ServerMessage>(value).unwrap(),
            fresh
        );
    }
}
