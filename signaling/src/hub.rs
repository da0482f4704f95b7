//! The rooms: who is in which room, and delivery of messages to peers. All state lives behind one
//! short-held mutex; delivery never blocks (a peer whose outbound queue is full is disconnected,
//! since a client that cannot keep up with signaling cannot hold a call either).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use confab_protocol::{
    ErrorCode, PeerId, PeerInfo, RoomCode, ServerMessage, SignalPayload, MAX_NAME_CHARS,
    PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, Notify};

use crate::ServerConfig;

/// Messages waiting for a client's socket; bounded so a stuck client cannot grow the server.
pub(crate) const OUTBOUND_QUEUE: usize = 256;

/// What the connection task writes to its socket.
#[derive(Debug)]
pub(crate) enum Outbound {
    Message(ServerMessage),
    Close { code: u16, reason: &'static str },
}

/// The hub's way to reach one connected client.
#[derive(Clone)]
pub(crate) struct PeerHandle {
    pub id: PeerId,
    pub tx: mpsc::Sender<Outbound>,
    /// Notified when the hub wants this client gone (its queue overflowed).
    pub kick: Arc<Notify>,
}

struct Member {
    info: PeerInfo,
    handle: PeerHandle,
}

#[derive(Default)]
struct Room {
    members: Vec<Member>,
}

/// An error for the client, as sent on its socket.
pub(crate) type Refusal = (ErrorCode, String);

/// All rooms of one server.
pub struct Hub {
    config: Arc<ServerConfig>,
    rooms: Mutex<HashMap<RoomCode, Room>>,
    next_peer: AtomicU64,
}

impl Hub {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            config,
            rooms: Mutex::new(HashMap::new()),
            next_peer: AtomicU64::new(1),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub(crate) fn new_peer_id(&self) -> PeerId {
        PeerId(self.next_peer.fetch_add(1, Ordering::Relaxed))
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomCode, Room>> {
        // A panic while holding this lock would be a bug in the few lines below; the map itself
        // stays consistent, so keep serving.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// (rooms, peers in rooms)
    pub fn counts(&self) -> (usize, usize) {
        let rooms = self.rooms();
        (rooms.len(), rooms.values().map(|r| r.members.len()).sum())
    }

    /// Puts `peer` into a room (a new one when `room` is `None`) and queues its `Welcome`; returns
    /// the room's code. The welcome is queued under the rooms lock, so it always comes before
    /// news of anyone who joins right after.
    pub(crate) fn join(
        &self,
        peer: &PeerHandle,
        version: u32,
        room: Option<&str>,
        name: Option<&str>,
    ) -> Result<RoomCode, Refusal> {
        if version != PROTOCOL_VERSION {
            return Err((
                ErrorCode::VersionMismatch,
                format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}; update Confab"),
            ));
        }
        let requested = match room {
            Some(text) => {
                Some(RoomCode::parse(text).map_err(|e| (ErrorCode::BadRoomCode, e.to_string()))?)
            }
            None => None,
        };
        let info = PeerInfo {
            id: peer.id,
            name: clean_name(name, peer.id),
        };
        let mut rooms = self.rooms();
        let code = requested.unwrap_or_else(|| loop {
            let code = RoomCode::generate();
            if !rooms.contains_key(&code) {
                break code;
            }
        });
        let room = rooms.entry(code.clone()).or_default();
        if room.members.len() >= self.config.room_size {
            let full = room.members.len();
            return Err((
                ErrorCode::RoomFull,
                format!("room {code} is full ({full} of {full} people are in it)"),
            ));
        }
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let welcome = ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            room: code.clone(),
            you: peer.id,
            peers: room.members.iter().map(|m| m.info.clone()).collect(),
            ice_servers: self.config.ice_servers_for(&info.name, now_unix),
        };
        deliver(peer, welcome);
        for member in &room.members {
            deliver(
                &member.handle,
                ServerMessage::PeerJoined { peer: info.clone() },
            );
        }
        room.members.push(Member {
            info,
            handle: peer.clone(),
        });
        Ok(code)
    }

    /// Relays `payload` from `from` to `to`, both in room `code`.
    pub(crate) fn relay(
        &self,
        code: &RoomCode,
        from: PeerId,
        to: PeerId,
        payload: SignalPayload,
    ) -> Result<(), Refusal> {
        let rooms = self.rooms();
        let target = rooms
            .get(code)
            .and_then(|room| room.members.iter().find(|m| m.info.id == to && to != from))
            .ok_or_else(|| {
                (
                    ErrorCode::UnknownPeer,
                    format!("{to} is not in room {code} (they may have left)"),
                )
            })?;
        deliver(&target.handle, ServerMessage::Signal { from, payload });
        Ok(())
    }

    /// Removes `id` from room `code` and tells the others; an empty room disappears.
    pub(crate) fn leave(&self, code: &RoomCode, id: PeerId) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(code) else {
            return;
        };
        room.members.retain(|m| m.info.id != id);
        if room.members.is_empty() {
            rooms.remove(code);
            return;
        }
        for member in &room.members {
            deliver(&member.handle, ServerMessage::PeerLeft { id });
        }
    }
}

/// Queues `msg` for a peer without waiting; a peer that cannot keep up is disconnected.
fn deliver(peer: &PeerHandle, msg: ServerMessage) {
    match peer.tx.try_send(Outbound::Message(msg)) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(peer = %peer.id, "outbound queue full; disconnecting the slow client");
            peer.kick.notify_one();
        }
        // The connection is closing; it leaves its room on the way out.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// A display name: trimmed, without control characters, at most MAX_NAME_CHARS characters.
fn clean_name(name: Option<&str>, id: PeerId) -> String {
    let cleaned: String = name
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    if cleaned.is_empty() {
        format!("Guest {}", id.0)
    } else {
        cleaned
    }
}

#[cfg(test)]
// `#[tokio::test]` waits on its runtime: each test is its own entry point.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn peer(hub: &Hub) -> (PeerHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(4);
        let handle = PeerHandle {
            id: hub.new_peer_id(),
            tx,
            kick: Arc::new(Notify::new()),
        };
        (handle, rx)
    }

    fn hub() -> Hub {
        Hub::new(Arc::new(ServerConfig::new("127.0.0.1:0".parse().unwrap())))
    }

    fn next(rx: &mut mpsc::Receiver<Outbound>) -> ServerMessage {
        match rx.try_recv().expect("a message") {
            Outbound::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn two_meet_a_third_is_refused_and_empty_rooms_vanish() {
        let hub = hub();
        let (a, mut a_rx) = peer(&hub);
        let (b, mut b_rx) = peer(&hub);
        let (c, _c_rx) = peer(&hub);
        let code = hub.join(&a, 1, None, Some("Ada")).unwrap();
        hub.join(&b, 1, Some(code.as_str()), Some(" Bob\u{7} "))
            .unwrap();
        let ServerMessage::Welcome { peers, you, .. } = next(&mut b_rx) else {
            panic!()
        };
        assert_eq!(you, b.id);
        assert_eq!(
            peers,
            vec![PeerInfo {
                id: a.id,
                name: "Ada".into()
            }]
        );
        // Each learns it is in before it hears of anyone else joining.
        assert!(matches!(next(&mut a_rx), ServerMessage::Welcome { you, .. } if you == a.id));
        assert_eq!(
            next(&mut a_rx),
            ServerMessage::PeerJoined {
                peer: PeerInfo {
                    id: b.id,
                    name: "Bob".into()
                }
            }
        );
        let (err, msg) = hub
            .join(&c, 1, Some(&code.as_str().to_uppercase()), None)
            .unwrap_err();
        assert_eq!(err, ErrorCode::RoomFull);
        assert!(msg.contains("full"), "{msg}");

        hub.leave(&code, b.id);
        assert_eq!(next(&mut a_rx), ServerMessage::PeerLeft { id: b.id });
        assert_eq!(hub.counts(), (1, 1));
        hub.leave(&code, a.id);
        assert_eq!(hub.counts(), (0, 0));
    }

    #[test]
    fn relay_only_reaches_members_of_the_same_room() {
        let hub = hub();
        let (a, _a_rx) = peer(&hub);
        let (b, mut b_rx) = peer(&hub);
        let (stranger, _s_rx) = peer(&hub);
        let code = hub.join(&a, 1, None, None).unwrap();
        hub.join(&b, 1, Some(code.as_str()), None).unwrap();
        let other_code = hub.join(&stranger, 1, None, None).unwrap();

        hub.relay(&code, a.id, b.id, SignalPayload::Bye).unwrap();
        assert!(matches!(next(&mut b_rx), ServerMessage::Welcome { .. }));
        assert_eq!(
            next(&mut b_rx),
            ServerMessage::Signal {
                from: a.id,
                payload: SignalPayload::Bye
            }
        );
        for (room, to) in [(&code, stranger.id), (&code, a.id), (&other_code, b.id)] {
            let (err, _) = hub.relay(room, a.id, to, SignalPayload::Bye).unwrap_err();
            assert_eq!(err, ErrorCode::UnknownPeer);
        }
    }

    #[test]
    fn bad_codes_versions_and_names() {
        let hub = hub();
        let (a, _rx) = peer(&hub);
        assert_eq!(
            hub.join(&a, 1, Some("nope"), None).unwrap_err().0,
            ErrorCode::BadRoomCode
        );
        assert_eq!(
            hub.join(&a, 99, None, None).unwrap_err().0,
            ErrorCode::VersionMismatch
        );
        assert_eq!(clean_name(None, PeerId(3)), "Guest 3");
        assert_eq!(clean_name(Some("\n\t"), PeerId(3)), "Guest 3");
        assert_eq!(
            clean_name(Some(&"x".repeat(500)), PeerId(3)).len(),
            MAX_NAME_CHARS
        );
    }

    #[tokio::test]
    async fn a_peer_that_cannot_keep_up_is_kicked() {
        let hub = hub();
        let (a, _a_rx) = peer(&hub);
        let (b, _b_rx) = peer(&hub); // never drained; queue of 4
        let code = hub.join(&a, 1, None, None).unwrap();
        hub.join(&b, 1, Some(code.as_str()), None).unwrap();
        for _ in 0..5 {
            hub.relay(&code, a.id, b.id, SignalPayload::EndOfCandidates)
                .unwrap();
        }
        // notify_one stored a permit, so this completes at once.
        let kicked = tokio::time::timeout(std::time::Duration::from_secs(1), b.kick.notified());
        assert!(kicked.await.is_ok(), "the slow peer was told to go");
    }
}
