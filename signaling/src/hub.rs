//! The rooms: who is in which room, delivery of messages to peers, and who gets TURN credentials
//! (a member of a room with someone else in it, within its address's rate). All state lives behind
//! one short-held mutex; delivery never blocks (a peer whose outbound queue is full, in messages or
//! bytes, is disconnected, since a client that cannot keep up with signaling cannot hold a call).
//! A member whose socket drops keeps its seat and id for a grace period: it comes back with the
//! resume token its `welcome` carried (signed with the server's key, so a restarted server with
//! the same key takes it too), and the others hear `peer_away` / `peer_back` meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use confab_protocol::{
    ErrorCode, IceServer, PeerId, PeerInfo, RoomCode, ServerMessage, SignalPayload, MAX_NAME_CHARS,
    PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, Notify};

use crate::address_limits::{AddressKey, MintLimiter};
use crate::ServerConfig;

/// Messages waiting for a client's socket; bounded so a stuck client cannot grow the server (the
/// queue is also bounded in bytes: `ServerConfig::outbound_queue_bytes`).
pub(crate) const OUTBOUND_QUEUE: usize = 256;

/// What the connection task writes to its socket.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A serialized `ServerMessage`, counted in the peer's queued bytes until written.
    Text(String),
    Close {
        code: u16,
        reason: &'static str,
    },
}

/// The hub's way to reach one connected client.
#[derive(Clone)]
pub(crate) struct PeerHandle {
    pub id: PeerId,
    /// Where the client connects from, for per-address limits.
    pub address: AddressKey,
    pub tx: mpsc::Sender<Outbound>,
    /// Bytes of `Outbound::Text` queued and not yet written; the writer subtracts what it wrote.
    pub queued_bytes: Arc<AtomicUsize>,
    /// The most `queued_bytes` may reach.
    pub queue_limit_bytes: usize,
    /// Notified when the hub wants this client gone (its queue overflowed).
    pub kick: Arc<Notify>,
}

impl PeerHandle {
    pub fn new(id: PeerId, address: AddressKey, tx: mpsc::Sender<Outbound>, limit: usize) -> Self {
        Self {
            id,
            address,
            tx,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            queue_limit_bytes: limit,
            kick: Arc::new(Notify::new()),
        }
    }

    /// Queues `msg` without waiting; a peer that cannot keep up is disconnected.
    pub fn deliver(&self, msg: &ServerMessage) {
        match serde_json::to_string(msg) {
            Ok(text) => self.deliver_text(text),
            Err(err) => tracing::error!(%err, "could not encode a server message"),
        }
    }

    /// Queues a serialized message; beyond the queue's bound (messages or bytes) the peer is
    /// told to go instead.
    pub fn deliver_text(&self, text: String) {
        let len = text.len();
        let queued = self.queued_bytes.fetch_add(len, Ordering::Relaxed) + len;
        if queued > self.queue_limit_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            tracing::warn!(peer = %self.id, queued, "outbound queue over its byte limit; disconnecting the slow client");
            self.kick.notify_one();
            return;
        }
        match self.tx.try_send(Outbound::Text(text)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                tracing::warn!(peer = %self.id, "outbound queue full; disconnecting the slow client");
                self.kick.notify_one();
            }
            // The connection is closing; it leaves its room on the way out.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            }
        }
    }
}

struct Member {
    info: PeerInfo,
    handle: PeerHandle,
    /// Since when its socket is gone (its seat is kept until the grace period ends).
    away_since: Option<Instant>,
}

impl Member {
    /// Whether `handle` is this member's current connection (not one it replaced).
    fn is_connection(&self, handle: &PeerHandle) -> bool {
        Arc::ptr_eq(&self.handle.kick, &handle.kick)
    }
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
    /// Lock order: `rooms`, then `mints`.
    mints: MintLimiter,
}

impl Hub {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            mints: MintLimiter::new(config.turn_mints_per_minute),
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
        // TURN only for someone with a person to call: a lone joiner gets STUN only, and the one
        // who was alone gets its credentials when the first other person arrives.
        let now = Instant::now();
        let (ice_servers, refused) = if room.members.is_empty() {
            (self.config.stun_servers(), None)
        } else {
            match self.ice_servers_for(&code, peer, now) {
                Ok(servers) => (servers, None),
                Err(refusal) => (self.config.stun_servers(), Some(refusal)),
            }
        };
        peer.deliver(&ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            room: code.clone(),
            you: peer.id,
            peers: room.members.iter().map(|m| m.info.clone()).collect(),
            ice_servers,
            resume_token: Some(crate::resume::token(&self.config.resume_key, &code, &info)),
        });
        if let Some((code, message)) = refused {
            peer.deliver(&ServerMessage::Error { code, message });
        }
        let was_alone = room.members.len() == 1;
        for member in &room.members {
            member
                .handle
                .deliver(&ServerMessage::PeerJoined { peer: info.clone() });
            if was_alone && self.config.has_turn() {
                member
                    .handle
                    .deliver(&match self.ice_servers_for(&code, &member.handle, now) {
                        Ok(ice_servers) => ServerMessage::IceServers { ice_servers },
                        Err((code, message)) => ServerMessage::Error { code, message },
                    });
            }
        }
        room.members.push(Member {
            info,
            handle: peer.clone(),
            away_since: None,
        });
        Ok(code)
    }

    /// Takes `peer` back into the seat its resume `token` names (after a dropped socket, or on a
    /// restarted server): `peer` gets the token's id, a `welcome`, and the others `peer_back`.
    pub(crate) fn resume(
        &self,
        peer: &mut PeerHandle,
        version: u32,
        token: &str,
    ) -> Result<RoomCode, Refusal> {
        if version != PROTOCOL_VERSION {
            return Err((
                ErrorCode::VersionMismatch,
                format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}; update Confab"),
            ));
        }
        let (code, info) = crate::resume::verify(&self.config.resume_key, token).ok_or((
            ErrorCode::BadMessage,
            "this resume token is not one of this server's; join again".to_owned(),
        ))?;
        peer.id = info.id;
        // New ids stay unique also on a restarted server that takes back older ones.
        self.next_peer
            .fetch_max(info.id.0.saturating_add(1), Ordering::Relaxed);
        let mut rooms = self.rooms();
        let room = rooms.entry(code.clone()).or_default();
        let seated = room.members.iter().position(|m| m.info.id == info.id);
        if seated.is_none() && room.members.len() >= self.config.room_size {
            return Err((
                ErrorCode::RoomFull,
                format!("your seat in room {code} was given away; the room is full"),
            ));
        }
        let others = room.members.iter().filter(|m| m.info.id != info.id).count();
        let now = Instant::now();
        let ice_servers = if others == 0 {
            self.config.stun_servers()
        } else {
            self.ice_servers_for(&code, peer, now)
                .unwrap_or_else(|_| self.config.stun_servers())
        };
        peer.deliver(&ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            room: code.clone(),
            you: info.id,
            peers: room
                .members
                .iter()
                .filter(|m| m.info.id != info.id)
                .map(|m| m.info.clone())
                .collect(),
            ice_servers,
            resume_token: Some(token.to_owned()),
        });
        match seated {
            Some(i) => {
                let member = &mut room.members[i];
                if !member.is_connection(peer) {
                    // The old socket may still look open (its address went away): end it.
                    member.handle.kick.notify_one();
                }
                member.handle = peer.clone();
                member.away_since = None;
            }
            None => room.members.push(Member {
                info: info.clone(),
                handle: peer.clone(),
                away_since: None,
            }),
        }
        for member in room.members.iter().filter(|m| m.info.id != info.id) {
            member
                .handle
                .deliver(&ServerMessage::PeerBack { id: info.id });
        }
        Ok(code)
    }

    /// `peer`'s socket is gone without a goodbye: keep its seat for the grace period and tell
    /// the others. Returns when the seat expires (`None`: it is free already, or was not its).
    pub(crate) fn connection_dropped(
        &self,
        code: &RoomCode,
        peer: &PeerHandle,
        now: Instant,
    ) -> Option<Instant> {
        let grace = self.config.resume_grace;
        {
            let mut rooms = self.rooms();
            let room = rooms.get_mut(code)?;
            let member = room
                .members
                .iter_mut()
                .find(|m| m.info.id == peer.id && m.is_connection(peer))?;
            if !grace.is_zero() {
                member.away_since = Some(now);
                for other in room.members.iter().filter(|m| m.info.id != peer.id) {
                    other
                        .handle
                        .deliver(&ServerMessage::PeerAway { id: peer.id });
                }
                return Some(now + grace);
            }
        }
        self.leave(code, peer.id);
        None
    }

    /// The grace period of a seat kept since `since` is over: free it unless its peer came back.
    pub(crate) fn expire(&self, code: &RoomCode, id: PeerId, since: Instant) {
        let still_away = self.rooms().get(code).is_some_and(|room| {
            room.members
                .iter()
                .any(|m| m.info.id == id && m.away_since == Some(since))
        });
        if still_away {
            tracing::info!(room = %code, peer = %id, "seat freed: the grace period ended");
            self.leave(code, id);
        }
    }

    /// The ICE servers for `peer` in room `code`, with TURN credentials minted for this member
    /// (the TURN username names the room and peer) if its address is within the mint rate.
    fn ice_servers_for(
        &self,
        code: &RoomCode,
        peer: &PeerHandle,
        now: Instant,
    ) -> Result<Vec<IceServer>, Refusal> {
        if !self.config.has_turn() {
            return Ok(self.config.stun_servers());
        }
        if !self.mints.try_mint(peer.address, now) {
            tracing::info!(peer = %peer.id, "TURN credentials refused: over the address's rate");
            return Err((
                ErrorCode::RateLimited,
                format!(
                    "no TURN credentials: your address asked for more than {} a minute; ask again later",
                    self.mints.per_minute()
                ),
            ));
        }
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(self
            .config
            .ice_servers_for(&format!("{code}/{}", peer.id), now_unix))
    }

    /// Answers a member's request for fresh ICE servers (before an ICE restart): TURN credentials
    /// only while someone else is in its room, and within its address's rate.
    pub(crate) fn fresh_ice_servers(
        &self,
        code: &RoomCode,
        peer: &PeerHandle,
    ) -> Result<(), Refusal> {
        let rooms = self.rooms();
        let others = rooms.get(code).map_or(0, |room| {
            room.members.iter().filter(|m| m.info.id != peer.id).count()
        });
        if others == 0 {
            return Err((
                ErrorCode::NotInRoom,
                format!("no one else is in room {code}: ICE servers come when someone joins"),
            ));
        }
        let ice_servers = self.ice_servers_for(code, peer, Instant::now())?;
        peer.deliver(&ServerMessage::IceServers { ice_servers });
        Ok(())
    }

    /// Relays `payload` from `from` to `to`, both in room `code`.
    pub(crate) fn relay(
        &self,
        code: &RoomCode,
        from: PeerId,
        to: PeerId,
        payload: SignalPayload,
    ) -> Result<(), Refusal> {
        tracing::debug!(%from, %to, kind = payload.kind(), "relaying");
        // Serialized before taking the lock: the payload can be an SDP of many kilobytes.
        let text = match serde_json::to_string(&ServerMessage::Signal { from, payload }) {
            Ok(text) => text,
            Err(err) => {
                tracing::error!(%err, "could not encode a signal");
                return Err((
                    ErrorCode::BadMessage,
                    "the signal could not be relayed".into(),
                ));
            }
        };
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
        target.handle.deliver_text(text);
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
            member.handle.deliver(&ServerMessage::PeerLeft { id });
        }
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
        peer_at(hub, "127.0.0.1")
    }

    fn peer_at(hub: &Hub, ip: &str) -> (PeerHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(4);
        let address = AddressKey::of(ip.parse().unwrap());
        let handle = PeerHandle::new(
            hub.new_peer_id(),
            address,
            tx,
            hub.config().outbound_queue_bytes,
        );
        (handle, rx)
    }

    fn hub() -> Hub {
        hub_with(|_| {})
    }

    fn hub_with(adjust: impl FnOnce(&mut ServerConfig)) -> Hub {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        adjust(&mut config);
        Hub::new(Arc::new(config))
    }

    fn next(rx: &mut mpsc::Receiver<Outbound>) -> ServerMessage {
        match rx.try_recv().expect("a message") {
            Outbound::Text(text) => serde_json::from_str(&text).expect("a server message"),
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

    #[tokio::test]
    async fn a_peer_over_its_byte_budget_is_kicked_though_its_queue_has_room() {
        let hub = hub_with(|c| c.outbound_queue_bytes = 3000);
        let (a, _a_rx) = peer(&hub);
        let (b, _b_rx) = peer(&hub); // never drained; room for 4 messages
        let code = hub.join(&a, 1, None, None).unwrap();
        hub.join(&b, 1, Some(code.as_str()), None).unwrap();
        let big = SignalPayload::Offer {
            sdp: "x".repeat(1000),
        };
        hub.relay(&code, a.id, b.id, big.clone()).unwrap();
        hub.relay(&code, a.id, b.id, big.clone()).unwrap();
        let not_yet = tokio::time::timeout(std::time::Duration::from_millis(50), b.kick.notified());
        assert!(not_yet.await.is_err(), "two offers fit in 3000 bytes");
        let queued = b.queued_bytes.load(Ordering::Relaxed);
        assert!((2000..3000).contains(&queued), "{queued}");
        hub.relay(&code, a.id, b.id, big).unwrap();
        let kicked = tokio::time::timeout(std::time::Duration::from_secs(1), b.kick.notified());
        assert!(kicked.await.is_ok(), "the third is over the byte budget");
        assert_eq!(
            b.queued_bytes.load(Ordering::Relaxed),
            queued,
            "refused bytes are not counted"
        );
    }

    fn turn_hub(mints_per_minute: u32) -> Hub {
        hub_with(|c| {
            c.stun = vec!["stun:s:3478".into()];
            c.turn = vec!["turn:t:3478".into()];
            c.turn_auth = Some(crate::config::TurnAuth::SharedSecret {
                secret: "s".into(),
                ttl: std::time::Duration::from_secs(600),
            });
            c.turn_mints_per_minute = mints_per_minute;
        })
    }

    fn turn_user(servers: &[IceServer]) -> Option<String> {
        servers.iter().find_map(|s| s.username.clone())
    }

    #[test]
    fn turn_credentials_only_with_company_and_named_for_the_member() {
        let hub = turn_hub(10);
        let (a, mut a_rx) = peer(&hub);
        let (b, mut b_rx) = peer_at(&hub, "10.0.0.2");
        let code = hub.join(&a, 1, None, None).unwrap();
        let ServerMessage::Welcome { ice_servers, .. } = next(&mut a_rx) else {
            panic!()
        };
        assert_eq!(ice_servers, hub.config().stun_servers(), "alone: STUN only");
        assert_eq!(
            hub.fresh_ice_servers(&code, &a).unwrap_err().0,
            ErrorCode::NotInRoom
        );
        hub.join(&b, 1, Some(code.as_str()), None).unwrap();
        let ServerMessage::Welcome { ice_servers, .. } = next(&mut b_rx) else {
            panic!()
        };
        let user = turn_user(&ice_servers).expect("TURN for the second");
        assert!(user.ends_with(&format!(":{code}/{}", b.id)), "{user}");
        assert!(matches!(next(&mut a_rx), ServerMessage::PeerJoined { .. }));
        let ServerMessage::IceServers { ice_servers } = next(&mut a_rx) else {
            panic!()
        };
        let user = turn_user(&ice_servers).expect("TURN for the first, now");
        assert!(user.ends_with(&format!(":{code}/{}", a.id)), "{user}");
    }

    #[test]
    fn turn_credentials_are_rate_limited_per_address() {
        let hub = turn_hub(2);
        let (a, mut a_rx) = peer_at(&hub, "10.0.0.1");
        let (b, mut b_rx) = peer_at(&hub, "10.0.0.2");
        let code = hub.join(&a, 1, None, None).unwrap();
        hub.join(&b, 1, Some(code.as_str()), None).unwrap();
        next(&mut a_rx); // welcome
        next(&mut a_rx); // peer joined
        next(&mut a_rx); // ice servers: a's first mint
        hub.fresh_ice_servers(&code, &a).unwrap();
        assert!(matches!(next(&mut a_rx), ServerMessage::IceServers { .. }));
        let (err, msg) = hub.fresh_ice_servers(&code, &a).unwrap_err();
        assert_eq!(err, ErrorCode::RateLimited);
        assert!(msg.contains("2 a minute"), "{msg}");
        // Another address is not affected.
        next(&mut b_rx);
        hub.fresh_ice_servers(&code, &b).unwrap();
        assert!(matches!(next(&mut b_rx), ServerMessage::IceServers { .. }));
    }
}
