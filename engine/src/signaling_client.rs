//! The client side of the signaling protocol: connects to `ws://` or `wss://` (trusting the web's
//! roots, a custom CA or a pinned certificate: `server_trust.rs`), joins a room and then sends and
//! receives protocol messages. The socket runs in its own task; callers use
//! bounded channels and never block on the network.

use confab_protocol::{
    ClientMessage, ErrorCode, IceServer, PeerId, PeerInfo, RoomCode, ServerMessage,
    PROTOCOL_VERSION,
};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
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

/// A joined signaling connection.
pub struct SignalingClient {
    tx: mpsc::Sender<ClientMessage>,
    rx: mpsc::Receiver<Result<ServerMessage, CallError>>,
}

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
        let unreachable = |reason: String| CallError::ServerUnreachable {
            url: url.clone(),
            reason,
        };
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(unreachable(
                "the address must start with ws:// or wss://".into(),
            ));
        }
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = client_config(&trust).map_err(|e| unreachable(e.to_string()))?;
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
            std::time::Duration::from_secs(10),
            tokio_tungstenite::connect_async_tls_with_config(&url, None, false, connector),
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
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::channel::<ClientMessage>(256);
        let (in_tx, in_rx) = mpsc::channel::<Result<ServerMessage, CallError>>(256);
        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                let Ok(text) = serde_json::to_string(&msg) else {
                    continue;
                };
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        tokio::spawn(async move {
            let closed = loop {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        match serde_json::from_str::<ServerMessage>(&text) {
                            Ok(msg) => {
                                if in_tx.send(Ok(msg)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(%e, "unreadable message from the server"),
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        break frame.map_or_else(|| "closed".to_owned(), |f| f.reason.to_string())
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "closed".to_owned(),
                }
            };
            let _ = in_tx.send(Err(CallError::ServerClosed(closed))).await;
        });
        let mut client = Self {
            tx: out_tx,
            rx: in_rx,
        };
        client
            .send(ClientMessage::Join {
                version: PROTOCOL_VERSION,
                room: room.map(|r| r.to_string()),
                name: Some(name.to_owned()),
            })
            .await?;
        match client.recv().await? {
            ServerMessage::Welcome {
                room,
                you,
                peers,
                ice_servers,
                ..
            } => Ok((
                client,
                Joined {
                    room,
                    me: you,
                    peers,
                    ice_servers,
                },
            )),
            ServerMessage::Error {
                code: ErrorCode::RoomFull,
                ..
            } => Err(CallError::RoomFull(
                room.map_or_else(String::new, ToString::to_string),
            )),
            ServerMessage::Error { message, .. } => Err(CallError::Refused(message)),
            other => Err(CallError::Refused(format!(
                "unexpected answer to join: {other:?}"
            ))),
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

    /// The next message from the server; an error once the connection is gone.
    pub async fn recv(&mut self) -> Result<ServerMessage, CallError> {
        match self.rx.recv().await {
            Some(result) => result,
            None => Err(CallError::ServerClosed("connection lost".into())),
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
