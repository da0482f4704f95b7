//! One client's WebSocket: parse and check what it sends (size, rate, shape), act through the hub,
//! write what the hub queues for it, ping it, and free its seat when it goes away or goes silent.
//! A misbehaving client gets an `error` message and, when it persists, a close frame; nothing it
//! sends can disturb other clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use confab_protocol::{ClientMessage, ErrorCode, RoomCode, ServerMessage, MAX_MESSAGE_BYTES};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, watch, Notify};

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
const CLIENT_TYPES: &[&str] = &["join", "signal", "leave", "ping"];

/// Messages a second allowed in a burst, as a multiple of the steady rate.
const BURST_FACTOR: u32 = 4;

pub(crate) async fn serve_socket(
    socket: WebSocket,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let me = PeerHandle {
        id: hub.new_peer_id(),
        tx,
        kick: Arc::new(Notify::new()),
    };
    let span = tracing::info_span!("client", peer = %me.id);
    let _enter = span.enter();
    let idle_timeout = hub.config().idle_timeout;
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write_loop(sink, rx, idle_timeout / 3));

    let mut client = Client::new(&hub, me.clone());
    tracing::debug!("connected");
    let reason = loop {
        tokio::select! {
            _ = me.kick.notified() => break Some((close::POLICY, "too slow to read signaling messages")),
            _ = shutdown.changed() => {
                client.send(ServerMessage::error(ErrorCode::ServerShutdown, "the server is shutting down"));
                break Some((close::GOING_AWAY, "server shutting down"));
            }
            next = tokio::time::timeout(idle_timeout, stream.next()) => match next {
                Err(_) => break Some((close::GOING_AWAY, "no message or pong within the idle timeout")),
                Ok(None) => break None,
                Ok(Some(Err(err))) => {
                    tracing::debug!(%err, "socket error");
                    let inner = err.into_inner();
                    let too_big = matches!(
                        inner.downcast_ref::<tungstenite::Error>(),
                        Some(tungstenite::Error::Capacity(_))
                    );
                    break too_big.then_some((close::TOO_BIG, "message too large"));
                }
                Ok(Some(Ok(message))) => {
                    if let Some(reason) = client.on_message(message, Instant::now()) {
                        break Some(reason);
                    }
                }
            },
        }
    };
    client.leave_room();
    if let Some((code, reason)) = reason {
        tracing::debug!(code, reason, "closing");
        // The queue may be full (that is one reason to close); the writer ends either way.
        let _ = me.tx.try_send(Outbound::Close { code, reason });
    }
    drop(client);
    drop(me);
    // The writer ends once every sender is gone or after the close frame.
    let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
    if reason.is_some() {
        // The closing handshake: discard what the client still sends until it answers our close
        // frame. Closing a socket with unread data makes the kernel send a reset, which can
        // overtake the close frame and hide the reason from the client.
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    }
    tracing::debug!("disconnected");
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    ping_every: Duration,
) {
    let mut ping = tokio::time::interval(ping_every.max(Duration::from_millis(100)));
    ping.tick().await;
    loop {
        let frame = tokio::select! {
            out = rx.recv() => match out {
                Some(Outbound::Message(msg)) => match serde_json::to_string(&msg) {
                    Ok(text) => Message::Text(text.into()),
                    Err(err) => {
                        tracing::error!(%err, "could not encode a server message");
                        continue;
                    }
                },
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
        if sink.send(frame).await.is_err() {
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
    bucket: TokenBucket,
    /// Rejected messages not yet paid back by accepted ones; too many and the client is cut off.
    strikes: u32,
    max_strikes: u32,
    last_rate_warning: Option<Instant>,
}

impl<'h> Client<'h> {
    fn new(hub: &'h Hub, me: PeerHandle) -> Self {
        let rate = hub.config().rate_per_sec;
        let burst = rate.saturating_mul(BURST_FACTOR);
        Self {
            hub,
            me,
            room: None,
            bucket: TokenBucket::new(rate, burst, Instant::now()),
            strikes: 0,
            max_strikes: burst,
            last_rate_warning: None,
        }
    }

    fn send(&self, msg: ServerMessage) {
        if self.me.tx.try_send(Outbound::Message(msg)).is_err() {
            self.me.kick.notify_one();
        }
    }

    fn refuse(&self, (code, message): Refusal) {
        tracing::debug!(?code, %message, "refused");
        self.send(ServerMessage::Error { code, message });
    }

    /// Handles one frame; returns a close code and reason when the connection must end.
    fn on_message(&mut self, message: Message, now: Instant) -> Option<(u16, &'static str)> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.refuse((
                    ErrorCode::BadMessage,
                    "send JSON text frames, not binary".into(),
                ));
                return None;
            }
            Message::Close(_) => return Some((1000, "bye")),
            Message::Ping(_) | Message::Pong(_) => return None,
        };
        if !self.bucket.try_take(now) {
            self.strikes += 1;
            if self.strikes > self.max_strikes {
                return Some((close::POLICY, "flooding: too many messages"));
            }
            let warned_recently = self
                .last_rate_warning
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
            if !warned_recently {
                self.last_rate_warning = Some(now);
                self.refuse((
                    ErrorCode::RateLimited,
                    format!(
                        "too many messages (limit {} a second); messages are being dropped",
                        self.hub.config().rate_per_sec
                    ),
                ));
            }
            return None;
        }
        self.strikes = self.strikes.saturating_sub(1);
        if text.len() > MAX_MESSAGE_BYTES {
            self.refuse((
                ErrorCode::TooLarge,
                format!(
                    "message of {} bytes is over the limit of {MAX_MESSAGE_BYTES}",
                    text.len()
                ),
            ));
            return None;
        }
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
            ClientMessage::Ping => self.send(ServerMessage::Pong),
        }
    }

    fn leave_room(&mut self) {
        if let Some(code) = self.room.take() {
            tracing::info!(room = %code, "left");
            self.hub.leave(&code, self.me.id);
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
        ];
        for (text, expected) in cases {
            let got = parse(text).map(|_| ()).map_err(|(code, _)| code);
            assert_eq!(&got, expected, "{text}");
        }
    }
}
