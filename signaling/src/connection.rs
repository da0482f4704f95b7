//! One client's WebSocket: parse and check what it sends (size, message and byte rate, shape), act
//! through the hub, write what the hub queues for it, ping it, and free its seat when it goes away,
//! goes silent or stays outside a room too long. A misbehaving client gets an `error` message and,
//! when it persists, a close frame; nothing it sends can disturb other clients.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use confab_protocol::{ClientMessage, ErrorCode, RoomCode, ServerMessage, MAX_MESSAGE_BYTES};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, watch};

use crate::address_limits::{AddressKey, ConnectionSlot};
use crate::hub::{Hub, Outbound, PeerHandle, Refusal, OUTBOUND_QUEUE};
use crate::TokenBucket;

/// WebSocket close codes (RFC 6455 §7.4.1).
mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// How long a closing connection waits for its last frames to go out and for the client's close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The message types a client may send, to tell "unknown type" from "malformed".
const CLIENT_TYPES: &[&str] = &["join", "signal", "leave", "ping", "ice_servers", "resume"];

/// Messages (and bytes) a second allowed in a burst, as a multiple of the steady rate.
const BURST_FACTOR: u32 = 4;

/// Why the read loop ended: a close frame to send, and whether the socket can still be read.
struct Ending {
    code: u16,
    reason: &'static str,
    /// A frame refused by its header leaves the socket mid-frame: reading on would buffer the
    /// payload the limit is there to refuse, so the socket is dropped without draining.
    drain: bool,
}

impl Ending {
    fn close(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            drain: true,
        }
    }
}

pub(crate) async fn serve_socket(
    socket: WebSocket,
    hub: Arc<Hub>,
    address: AddressKey,
    slot: ConnectionSlot,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let me = PeerHandle::new(
        hub.new_peer_id(),
        address,
        tx,
        hub.config().outbound_queue_bytes,
    );
    let span = tracing::info_span!("client", peer = %me.id);
    let _enter = span.enter();
    let idle_timeout = hub.config().idle_timeout;
    let join_timeout = hub.config().join_timeout;
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write_loop(sink, rx, me.clone(), idle_timeout / 3));

    let mut client = Client::new(&hub, me.clone(), Instant::now());
    tracing::debug!("connected");
    let ending = loop {
        // Outside a room, the socket has until the join deadline (reset by `leave`).
        let join_deadline = client.outside_since.map(|since| since + join_timeout);
        let join_expired = async {
            match join_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = me.kick.notified() => break Some(Ending::close(close::POLICY, "too slow to read signaling messages")),
            _ = shutdown.changed() => {
                client.send(ServerMessage::error(ErrorCode::ServerShutdown, "the server is shutting down"));
                break Some(Ending::close(close::GOING_AWAY, "server shutting down"));
            }
            () = join_expired => break Some(Ending::close(close::POLICY, "did not join a room in time")),
            next = tokio::time::timeout(idle_timeout, stream.next()) => match next {
                Err(_) => break Some(Ending::close(close::GOING_AWAY, "no message or pong within the idle timeout")),
                Ok(None) => break None,
                Ok(Some(Err(err))) => {
                    tracing::debug!(%err, "socket error");
                    let inner = err.into_inner();
                    break match inner.downcast_ref::<tungstenite::Error>() {
                        Some(tungstenite::Error::Capacity(capacity)) => {
                            client.refuse((ErrorCode::TooLarge, too_large_message(capacity)));
                            Some(Ending { code: close::TOO_BIG, reason: "message too large", drain: false })
                        }
                        _ => None,
                    };
                }
                Ok(Some(Ok(message))) => {
                    if let Some((code, reason)) = client.on_message(message, Instant::now()) {
                        break Some(Ending::close(code, reason));
                    }
                }
            },
        }
    };
    // No goodbye: the seat waits for the client to resume (a goodbye freed it already).
    if let Some((code, id, expires)) = client.dropped(Instant::now()) {
        let hub = hub.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(expires.into()).await;
            hub.expire(&code, id, expires - hub.config().resume_grace);
        });
    }
    if let Some(Ending { code, reason, .. }) = &ending {
        tracing::debug!(code, reason, "closing");
        // The queue may be full (that is one reason to close); the writer ends either way.
        let _ = me.tx.try_send(Outbound::Close {
            code: *code,
            reason,
        });
    }
    drop(client);
    drop(me);
    // The writer ends once every sender is gone or after the close frame.
    let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
    match ending {
        Some(Ending { drain: true, .. }) => {
            // The closing handshake: discard what the client still sends until it answers our
            // close frame. Closing a socket with unread data makes the kernel send a reset, which
            // can overtake the close frame and hide the reason from the client. Bounded: each
            // frame is at most MAX_MESSAGE_BYTES, and the wait at most CLOSE_GRACE.
            let drain = async { while let Some(Ok(_)) = stream.next().await {} };
            let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
        }
        Some(Ending { drain: false, .. }) if !*shutdown.borrow() => {
            // Mid-frame: reading on would buffer the refused payload. Keep the socket open,
            // unread, so the reset comes after the client has had time to read the close frame.
            tokio::select! {
                () = tokio::time::sleep(CLOSE_GRACE) => {}
                _ = shutdown.changed() => {}
            }
        }
        _ => {}
    }
    // The connection counts against its address's cap until the socket is gone.
    drop(stream);
    drop(slot);
    tracing::debug!("disconnected");
}

/// The sentence for a frame refused by the WebSocket layer.
fn too_large_message(capacity: &tungstenite::error::CapacityError) -> String {
    match capacity {
        tungstenite::error::CapacityError::MessageTooLong { size, max_size } => {
            format!("message of {size} bytes is over the limit of {max_size}")
        }
        other => format!("{other}; messages are limited to {MAX_MESSAGE_BYTES} bytes"),
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    me: PeerHandle,
    ping_every: Duration,
) {
    // Only the queued-bytes counter is needed: holding `me` would keep the queue open.
    let queued_bytes = me.queued_bytes.clone();
    drop(me);
    let mut ping = tokio::time::interval(ping_every.max(Duration::from_millis(100)));
    ping.tick().await;
    loop {
        let mut written = 0;
        let frame = tokio::select! {
            out = rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    written = text.len();
                    Message::Text(text.into())
                }
                Some(Outbound::Close { code, reason }) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                        .await;
                    break;
                }
                None => break,
            },
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        let sent = sink.send(frame).await;
        queued_bytes.fetch_sub(written, Ordering::Relaxed);
        if sent.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

/// The protocol state of one connection.
struct Client<'h> {
    hub: &'h Hub,
    me: PeerHandle,
    room: Option<RoomCode>,
    /// Since when the client has been outside a room (connected or left); `None` while in one.
    outside_since: Option<Instant>,
    bucket: TokenBucket,
    /// Rejected messages not yet paid back by accepted ones; too many and the client is cut off.
    strikes: u32,
    max_strikes: u32,
    /// Bytes of every frame the client sends, whatever its kind.
    byte_bucket: TokenBucket,
    /// Bytes dropped for the byte rate not yet paid back by accepted ones; above a burst's worth
    /// the client is cut off.
    byte_strikes: usize,
    max_byte_strikes: usize,
    last_rate_warning: Option<Instant>,
}

impl<'h> Client<'h> {
    fn new(hub: &'h Hub, me: PeerHandle, now: Instant) -> Self {
        let rate = hub.config().rate_per_sec;
        let burst = rate.saturating_mul(BURST_FACTOR);
        let byte_rate = hub.config().byte_rate_per_sec;
        let byte_burst = byte_rate.saturating_mul(BURST_FACTOR);
        Self {
            hub,
            me,
            room: None,
            outside_since: Some(now),
            bucket: TokenBucket::new(rate, burst, now),
            strikes: 0,
            max_strikes: burst,
            byte_bucket: TokenBucket::new(byte_rate, byte_burst, now),
            byte_strikes: 0,
            max_byte_strikes: byte_burst as usize,
            last_rate_warning: None,
        }
    }

    fn send(&self, msg: ServerMessage) {
        self.me.deliver(&msg);
    }

    /// Tells the client it is over a rate, at most once a second.
    fn warn_rate(&mut self, now: Instant, what: String) {
        let warned_recently = self
            .last_rate_warning
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
        if !warned_recently {
            self.last_rate_warning = Some(now);
            self.refuse((ErrorCode::RateLimited, what));
        }
    }

    /// Charges a frame of `len` bytes to the byte rate: `Ok(true)` to handle it, `Ok(false)` to
    /// drop it, `Err` to cut the client off.
    fn charge_bytes(&mut self, len: usize, now: Instant) -> Result<bool, (u16, &'static str)> {
        if self.byte_bucket.try_take_n(len, now) {
            self.byte_strikes = self.byte_strikes.saturating_sub(len);
            return Ok(true);
        }
        self.byte_strikes = self.byte_strikes.saturating_add(len.max(1));
        if self.byte_strikes > self.max_byte_strikes {
            return Err((close::POLICY, "flooding: too many bytes"));
        }
        self.warn_rate(
            now,
            format!(
                "too many bytes (limit {} a second); messages are being dropped",
                self.hub.config().byte_rate_per_sec
            ),
        );
        Ok(false)
    }

    fn refuse(&self, (code, message): Refusal) {
        tracing::debug!(?code, %message, "refused");
        self.send(ServerMessage::Error { code, message });
    }

    /// Handles one frame; returns a close code and reason when the connection must end.
    fn on_message(&mut self, message: Message, now: Instant) -> Option<(u16, &'static str)> {
        let len = match &message {
            Message::Close(_) => return Some((1000, "bye")),
            Message::Text(text) => text.len(),
            Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        };
        match self.charge_bytes(len, now) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(reason) => return Some(reason),
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.refuse((
                    ErrorCode::BadMessage,
                    "send JSON text frames, not binary".into(),
                ));
                return None;
            }
            Message::Close(_) | Message::Ping(_) | Message::Pong(_) => return None,
        };
        if !self.bucket.try_take(now) {
            self.strikes += 1;
            if self.strikes > self.max_strikes {
                return Some((close::POLICY, "flooding: too many messages"));
            }
            self.warn_rate(
                now,
                format!(
                    "too many messages (limit {} a second); messages are being dropped",
                    self.hub.config().rate_per_sec
                ),
            );
            return None;
        }
        self.strikes = self.strikes.saturating_sub(1);
        // Longer messages never get here: the WebSocket layer refuses them by their header
        // (`server::ws_upgrade`), before their payload is read.
        debug_assert!(text.len() <= MAX_MESSAGE_BYTES);
        match parse(&text) {
            Ok(msg) => self.on_client_message(msg),
            Err(refusal) => self.refuse(refusal),
        }
        None
    }

    fn on_client_message(&mut self, msg: ClientMessage) {
        match msg {
            ClientMessage::Join {
                version,
                room,
                name,
            } => {
                if let Some(code) = &self.room {
                    self.refuse((
                        ErrorCode::AlreadyInRoom,
                        format!("already in room {code}; send leave first"),
                    ));
                    return;
                }
                match self
                    .hub
                    .join(&self.me, version, room.as_deref(), name.as_deref())
                {
                    Ok(code) => {
                        tracing::info!(room = %code, "joined");
                        self.room = Some(code);
                        self.outside_since = None;
                    }
                    Err(refusal) => self.refuse(refusal),
                }
            }
            ClientMessage::Signal { to, payload } => match &self.room {
                Some(code) => {
                    if let Err(refusal) = self.hub.relay(code, self.me.id, to, payload) {
                        self.refuse(refusal);
                    }
                }
                None => self.refuse((ErrorCode::NotInRoom, "join a room before signaling".into())),
            },
            ClientMessage::Leave => {
                if self.room.is_none() {
                    self.refuse((ErrorCode::NotInRoom, "not in a room".into()));
                }
                self.leave_room();
            }
            ClientMessage::Resume { version, token } => {
                if let Some(code) = &self.room {
                    self.refuse((
                        ErrorCode::AlreadyInRoom,
                        format!("already in room {code}; send leave first"),
                    ));
                    return;
                }
                match self.hub.resume(&mut self.me, version, &token) {
                    Ok(code) => {
                        tracing::info!(room = %code, peer = %self.me.id, "resumed");
                        self.room = Some(code);
                        self.outside_since = None;
                    }
                    Err(refusal) => self.refuse(refusal),
                }
            }
            ClientMessage::Ping => self.send(ServerMessage::Pong),
            ClientMessage::IceServers => match &self.room {
                Some(code) => {
                    if let Err(refusal) = self.hub.fresh_ice_servers(code, &self.me) {
                        self.refuse(refusal);
                    }
                }
                None => self.refuse((
                    ErrorCode::NotInRoom,
                    "join a room before asking for ICE servers".into(),
                )),
            },
        }
    }

    /// The socket is gone without a goodbye: the room, id and time at which its seat expires.
    fn dropped(&mut self, now: Instant) -> Option<(RoomCode, confab_protocol::PeerId, Instant)> {
        let code = self.room.take()?;
        let expires = self.hub.connection_dropped(&code, &self.me, now)?;
        tracing::info!(room = %code, "socket dropped; seat kept");
        Some((code, self.me.id, expires))
    }

    fn leave_room(&mut self) {
        if let Some(code) = self.room.take() {
            tracing::info!(room = %code, "left");
            self.hub.leave(&code, self.me.id);
            self.outside_since = Some(Instant::now());
        }
    }
}

/// Parses a client message, telling malformed JSON from an unknown type from a bad shape.
fn parse(text: &str) -> Result<ClientMessage, Refusal> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| (ErrorCode::BadMessage, format!("not valid JSON: {e}")))?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            (
                ErrorCode::BadMessage,
                "a message is a JSON object with a string \"type\"".to_owned(),
            )
        })?;
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(40).collect();
        return Err((
            ErrorCode::UnknownType,
            format!("unknown message type {shown:?}; expected one of {CLIENT_TYPES:?}"),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| (ErrorCode::BadMessage, format!("bad {kind} message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tells_errors_apart() {
        let cases: &[(&str, Result<(), ErrorCode>)] = &[
            (r#"{"type":"ping"}"#, Ok(())),
            (
                r#"{"type":"join","version":1,"room":"abc-defg-hij"}"#,
                Ok(()),
            ),
            ("{not json", Err(ErrorCode::BadMessage)),
            ("[1,2]", Err(ErrorCode::BadMessage)),
            (r#"{"type":7}"#, Err(ErrorCode::BadMessage)),
            (r#"{"type":"dance"}"#, Err(ErrorCode::UnknownType)),
            (r#"{"type":"signal","to":"x"}"#, Err(ErrorCode::BadMessage)),
            (r#"{"type":"join"}"#, Err(ErrorCode::BadMessage)),
            (r#"{"type":"ice_servers"}"#, Ok(())),
        ];
        for (text, expected) in cases {
            let got = parse(text).map(|_| ()).map_err(|(code, _)| code);
            assert_eq!(&got, expected, "{text}");
        }
    }
}
