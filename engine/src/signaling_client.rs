//! The client side of the signaling protocol: connects to `ws://` or `wss://` (trusting the web's
//! roots, a custom CA or a pinned certificate: `server_trust.rs`), joins a room and then sends and
//! receives protocol messages. The socket runs in its own task; callers use
//! bounded channels and never block on the network. When the socket drops, the task reconnects
//! with backoff and resumes the seat with the token from `welcome`.

use confab_protocol::{
    ClientMessage, ErrorCode, IceServer, PeerId, PeerInfo, RoomCode, ServerMessage,
    PROTOCOL_VERSION,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;

use super::server_trust::{client_config, split_pin, ServerTrust};
use super::CallError;

/// What the server said when we joined.
#[derive(Debug, Clone)]
pub struct Joined {
    pub room: RoomCode,
    pub me: PeerId,
    pub peers: Vec<PeerInfo>,
    pub ice_servers: Vec<IceServer>,
}

/// What the connection reports besides the server's messages.
#[derive(Debug)]
pub enum SignalingEvent {
    Message(ServerMessage),
    /// The socket dropped; reconnecting (messages sent meanwhile wait).
    Lost(String),
    /// Reconnected and back in our seat.
    Resumed,
}

/// A joined signaling connection; it reconnects and resumes by itself when the socket drops.
pub struct SignalingClient {
    tx: mpsc::Sender<ClientMessage>,
    rx: mpsc::Receiver<Result<SignalingEvent, CallError>>,
    link: Arc<Link>,
    /// The socket task: it ends once our goodbye is written (or the server is gone for good).
    task: tokio::task::JoinHandle<()>,
}

/// How long leaving waits for the goodbye to be written. A socket being resumed does not send
/// it (the task is stopped instead); the server then frees the seat when its resume grace is
/// over.
const LEAVE_GRACE: Duration = Duration::from_secs(1);

/// What the session and the socket task share.
struct Link {
    /// Wakes the socket task to drop its socket and resume on a new one.
    reconnect: Notify,
    /// The server's address at the other end of the latest socket (`None` if it could not say).
    server_addr: std::sync::Mutex<Option<SocketAddr>>,
}

impl Link {
    fn set_server_addr(&self, ws: &Socket) {
        if let Some(addr) = peer_addr(ws) {
            *self
                .server_addr
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(addr);
        }
    }
}

/// The first waits between reconnection attempts; then the last one, over and over.
const BACKOFF: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// Attempts to resume before the server is given up on (about a minute).
const RESUME_ATTEMPTS: usize = 35;
/// No message (or ping) from the server for this long means the socket is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(15);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Adds `/ws` to a bare server URL (`ws://host:port` -> `ws://host:port/ws`).
pub fn normalize_url(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    let has_path = trimmed
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if has_path {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/ws")
    }
}

async fn connect(url: &str, trust: &ServerTrust) -> Result<Socket, CallError> {
    let unreachable = |reason: String| CallError::ServerUnreachable {
        url: url.to_owned(),
        reason,
    };
    let tls = client_config(trust).map_err(|e| unreachable(e.to_string()))?;
    if tls.is_some() && !url.starts_with("wss://") {
        return Err(unreachable(
            super::server_trust::TrustError::NotTls.to_string(),
        ));
    }
    let (connector, pinned) = match tls {
        Some(setup) => (
            Some(tokio_tungstenite::Connector::Rustls(setup.config)),
            setup.pinned,
        ),
        None => (None, None),
    };
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector),
    )
    .await
    .map_err(|_| unreachable("no answer within 10 s".into()))?
    .map_err(|e| match pinned.as_ref().and_then(|p| p.refused()) {
        Some(seen) => unreachable(format!(
            "its certificate (SHA-256 {seen}) is not the pinned one: someone may be in \
             between, or the server made a new certificate; refusing to connect"
        )),
        None => unreachable(e.to_string()),
    })?;
    Ok(ws)
}

/// The address at the other end of `ws`'s TCP connection.
fn peer_addr(ws: &Socket) -> Option<SocketAddr> {
    match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.peer_addr().ok(),
        tokio_tungstenite::MaybeTlsStream::Rustls(tls) => tls.get_ref().0.peer_addr().ok(),
        _ => None,
    }
}

async fn send_on(ws: &mut Socket, msg: &ClientMessage) -> Result<(), CallError> {
    let text = serde_json::to_string(msg).map_err(|e| CallError::WebRtc(e.to_string()))?;
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| CallError::ServerClosed(e.to_string()))
}

/// The next server message; `Err` with why the socket ended.
async fn recv_on(ws: &mut Socket) -> Result<ServerMessage, String> {
    loop {
        match tokio::time::timeout(SILENCE_LIMIT, ws.next()).await {
            Err(_) => return Err("the server went silent".into()),
            Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<ServerMessage>(&text)
            {
                Ok(msg) => return Ok(msg),
                Err(e) => tracing::warn!(%e, "unreadable message from the server"),
            },
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(frame.map_or_else(|| "closed".to_owned(), |f| f.reason.to_string()))
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("closed".to_owned()),
        }
    }
}

/// Sends `hello` (join or resume) and reads the answer.
async fn hello(ws: &mut Socket, hello: &ClientMessage) -> Result<ServerMessage, CallError> {
    send_on(ws, hello).await?;
    recv_on(ws).await.map_err(CallError::ServerClosed)
}

impl SignalingClient {
    /// Connects and joins `room` (a new room when `None`).
    pub async fn join(
        url: &str,
        room: Option<&RoomCode>,
        name: &str,
        trust: &ServerTrust,
    ) -> Result<(Self, Joined), CallError> {
        // A pin in the address (`#sha256=...`) counts like one given on the command line.
        let (url, pin_in_url) = split_pin(url);
        let trust = ServerTrust {
            pin_sha256: trust.pin_sha256.clone().or(pin_in_url),
            ca_file: trust.ca_file.clone(),
        };
        let url = normalize_url(&url);
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(CallError::ServerUnreachable {
                url,
                reason: "the address must start with ws:// or wss://".into(),
            });
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ws = connect(&url, &trust).await?;
        let answer = hello(
            &mut ws,
            &ClientMessage::Join {
                version: PROTOCOL_VERSION,
                room: room.map(|r| r.to_string()),
                name: Some(name.to_owned()),
            },
        )
        .await?;
        let (joined, token) = match answer {
            ServerMessage::Welcome {
                room,
                you,
                peers,
                ice_servers,
                resume_token,
                ..
            } => (
                Joined {
                    room,
                    me: you,
                    peers,
                    ice_servers,
                },
                resume_token,
            ),
            ServerMessage::Error {
                code: ErrorCode::RoomFull,
                ..
            } => {
                return Err(CallError::RoomFull(
                    room.map_or_else(String::new, ToString::to_string),
                ))
            }
            ServerMessage::Error { message, .. } => return Err(CallError::Refused(message)),
            other => {
                return Err(CallError::Refused(format!(
                    "unexpected answer to join: {other:?}"
                )))
            }
        };
        let (out_tx, out_rx) = mpsc::channel::<ClientMessage>(256);
        let (in_tx, in_rx) = mpsc::channel(256);
        let link = Arc::new(Link {
            reconnect: Notify::new(),
            server_addr: std::sync::Mutex::new(None),
        });
        link.set_server_addr(&ws);
        let task = tokio::spawn(run_socket(
            url,
            trust,
            ws,
            token,
            out_rx,
            in_tx,
            link.clone(),
        ));
        Ok((
            Self {
                tx: out_tx,
                rx: in_rx,
                link,
                task,
            },
            joined,
        ))
    }

    /// Leaves the room: a goodbye after what is already queued, so that the server frees our
    /// seat at once (a socket that only closed keeps it for a resume), and waits up to
    /// `LEAVE_GRACE` until it was written. A process that exits right after the call would
    /// otherwise stop the socket task before it ran, and the room would look full to a third
    /// person, or to us coming back, for the server's resume grace.
    pub async fn leave(self) {
        let Self { tx, mut task, .. } = self;
        if task.is_finished() {
            return;
        }
        let _ = tx.send(ClientMessage::Leave).await;
        if tokio::time::timeout(LEAVE_GRACE, &mut task).await.is_err() {
            // Most likely resuming a lost socket: stopped, so that it cannot take the seat back
            // after the call is over (the server frees it when its resume grace ends).
            tracing::debug!("the goodbye to the signaling server was not written in time");
            task.abort();
        }
    }

    pub async fn send(&self, msg: ClientMessage) -> Result<(), CallError> {
        self.tx
            .send(msg)
            .await
            .map_err(|_| CallError::ServerClosed("connection lost".into()))
    }

    /// A sender usable from other tasks.
    pub fn sender(&self) -> mpsc::Sender<ClientMessage> {
        self.tx.clone()
    }

    /// Drop the socket and resume on a new one now (the machine's addresses changed: the old
    /// socket may name an address that is gone, and would only be noticed dead much later).
    pub fn reconnect_now(&self) {
        self.link.reconnect.notify_one();
    }

    /// The signaling server's address, as the latest socket reached it (to tell whether the
    /// machine has a route to it; a resume after a network change may reach it at another one).
    pub fn server_addr(&self) -> Option<SocketAddr> {
        *self
            .link
            .server_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next event; an error once the server is gone for good.
    pub async fn recv(&mut self) -> Result<SignalingEvent, CallError> {
        match self.rx.recv().await {
            Some(result) => result,
            None => Err(CallError::ServerClosed("connection lost".into())),
        }
    }
}

/// Owns the socket: writes what the session sends, reads what the server sends, and when the
/// socket drops, reconnects with backoff and resumes with `token`.
async fn run_socket(
    url: String,
    trust: ServerTrust,
    mut ws: Socket,
    token: Option<String>,
    mut out_rx: mpsc::Receiver<ClientMessage>,
    in_tx: mpsc::Sender<Result<SignalingEvent, CallError>>,
    link: Arc<Link>,
) {
    loop {
        let lost = loop {
            tokio::select! {
                // A change of the machine's addresses is looked at before anything is written:
                // the session asks for a new socket and then sends its restart offer, which the
                // old socket (bound to an address that is gone) would swallow without an error.
                biased;
                () = link.reconnect.notified() => break "the network changed".to_owned(),
                out = out_rx.recv() => match out {
                    // The call is over (`leave`, or every sender gone): a goodbye frees our seat
                    // at once, and the socket has nothing more to carry.
                    Some(ClientMessage::Leave) | None => {
                        let _ = send_on(&mut ws, &ClientMessage::Leave).await;
                        let _ = ws.close(None).await;
                        return;
                    }
                    Some(msg) => {
                        if let Err(err) = send_on(&mut ws, &msg).await {
                            break err.to_string();
                        }
                    }
                },
                msg = recv_on(&mut ws) => match msg {
                    Ok(msg) => {
                        if in_tx.send(Ok(SignalingEvent::Message(msg))).await.is_err() {
                            return;
                        }
                    }
                    Err(reason) => break reason,
                },
            }
        };
        tracing::info!(%lost, "signaling connection lost");
        let Some(token) = &token else {
            let _ = in_tx.send(Err(CallError::ServerClosed(lost))).await;
            return;
        };
        if in_tx
            .send(Ok(SignalingEvent::Lost(lost.clone())))
            .await
            .is_err()
        {
            return;
        }
        let resume = ClientMessage::Resume {
            version: PROTOCOL_VERSION,
            token: token.clone(),
        };
        let mut attempt = 0;
        ws = loop {
            if attempt >= RESUME_ATTEMPTS {
                let _ = in_tx.send(Err(CallError::ServerClosed(lost))).await;
                return;
            }
            let wait = BACKOFF[attempt.min(BACKOFF.len() - 1)];
            attempt += 1;
            tokio::time::sleep(wait).await;
            let mut ws = match connect(&url, &trust).await {
                Ok(ws) => ws,
                Err(err) => {
                    tracing::debug!(%err, attempt, "reconnecting");
                    continue;
                }
            };
            match hello(&mut ws, &resume).await {
                Ok(ServerMessage::Welcome { .. }) => {
                    link.set_server_addr(&ws);
                    break ws;
                }
                Ok(ServerMessage::Error { message, .. }) => {
                    let _ = in_tx.send(Err(CallError::Refused(message))).await;
                    return;
                }
                Ok(other) => tracing::debug!(?other, "unexpected answer to resume"),
                Err(err) => tracing::debug!(%err, attempt, "resuming"),
            }
        };
        tracing::info!("signaling resumed");
        if in_tx.send(Ok(SignalingEvent::Resumed)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_ws_path() {
        assert_eq!(normalize_url("ws://h:1"), "ws://h:1/ws");
        assert_eq!(normalize_url("wss://h:1/"), "wss://h:1/ws");
        assert_eq!(normalize_url("ws://h:1/ws"), "ws://h:1/ws");
        assert_eq!(normalize_url("wss://h/custom/path"), "wss://h/custom/path");
    }
}
