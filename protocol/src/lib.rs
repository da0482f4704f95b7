//! Confab's wire contract between clients and the signaling server: the JSON messages (with a
//! protocol version) and room codes. Plain serde types, no framework types, so the desktop app,
//! the server and the browser client all speak exactly this.

mod messages;
mod room_code;

pub use messages::{
    ClientMessage, ErrorCode, IceServer, PeerId, PeerInfo, ServerMessage, SignalPayload,
    MAX_MESSAGE_BYTES, MAX_NAME_CHARS, PROTOCOL_VERSION,
};
pub use room_code::{RoomCode, RoomCodeError};
