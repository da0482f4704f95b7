//! A WebSocket test client for the signaling server, over real sockets.

#![allow(dead_code)] // each test file uses a different part

use std::time::Duration;

use confab_protocol::{ClientMessage, ErrorCode, PeerId, RoomCode, ServerMessage, SignalPayload};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect");
        Self { ws }
    }

    /// Connects from `local_ip` (e.g. another loopback address); the handshake's error, e.g. an
    /// HTTP refusal, is returned rather than a panic.
    pub async fn try_connect_from(
        url: &str,
        local_ip: std::net::IpAddr,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("a ws:// URL with a host");
        let remote: std::net::SocketAddr = host.parse().expect("an IP:port host");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(local_ip, 0))
            .expect("bind");
        let tcp = socket.connect(remote).await.expect("TCP connect");
        let (ws, _) = tokio::time::timeout(
            TIMEOUT,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)),
        )
        .await
        .expect("handshake timed out")?;
        Ok(Self { ws })
    }

    pub async fn send(&mut self, msg: &ClientMessage) {
        self.send_text(&serde_json::to_string(msg).unwrap()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .expect("send");
    }

    pub async fn send_join_version(&mut self, version: u32) -> ServerMessage {
        self.send(&ClientMessage::Join {
            version,
            room: None,
            name: None,
        })
        .await;
        self.recv().await
    }

    /// The next protocol message (pings are answered by tungstenite while reading).
    pub async fn recv(&mut self) -> ServerMessage {
        match self.next_frame().await {
            Message::Text(text) => serde_json::from_str(&text).expect("server sent valid JSON"),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next frame that is not a ping or pong.
    pub async fn next_frame(&mut self) -> Message {
        loop {
            let frame = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("no message within the timeout")
                .expect("socket closed")
                .expect("socket error");
            if !matches!(frame, Message::Ping(_) | Message::Pong(_)) {
                return frame;
            }
        }
    }

    pub async fn expect_error(&mut self, expected: ErrorCode) -> String {
        match self.recv().await {
            ServerMessage::Error { code, message } if code == expected => message,
            other => panic!("expected error {expected:?}, got {other:?}"),
        }
    }

    /// Expects the server to close the socket with `code`.
    pub async fn expect_close(&mut self, code: u16) {
        self.expect_close_reason(code).await;
    }

    /// Expects the server to close the socket with `code`; returns the reason it gave.
    pub async fn expect_close_reason(&mut self, code: u16) -> String {
        loop {
            match self.next_frame().await {
                Message::Close(Some(frame)) => {
                    assert_eq!(
                        u16::from(frame.code),
                        code,
                        "close reason: {}",
                        frame.reason
                    );
                    return frame.reason.to_string();
                }
                Message::Text(_) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    pub async fn join(&mut self, room: Option<&str>, name: &str) -> ServerMessage {
        self.send(&ClientMessage::Join {
            version: confab_protocol::PROTOCOL_VERSION,
            room: room.map(str::to_owned),
            name: Some(name.to_owned()),
        })
        .await;
        self.recv().await
    }

    /// Joins and expects a welcome; returns (room, my id, ids already there).
    pub async fn join_ok(
        &mut self,
        room: Option<&str>,
        name: &str,
    ) -> (RoomCode, PeerId, Vec<PeerId>) {
        match self.join(room, name).await {
            ServerMessage::Welcome {
                room, you, peers, ..
            } => (room, you, peers.iter().map(|p| p.id).collect()),
            other => panic!("expected welcome, got {other:?}"),
        }
    }
}

/// Two new clients meet in a new room and swap an offer, an answer and a candidate.
pub async fn assert_pair_meets(url: &str) {
    let mut ada = Client::connect(url).await;
    let mut bob = Client::connect(url).await;
    let (room, ada_id, others) = ada.join_ok(None, "Ada").await;
    assert!(others.is_empty());
    // Bob types the code in capitals with spaces: the server forgives it.
    let typed = room.as_str().to_uppercase().replace('-', " ");
    let (room_b, bob_id, others) = bob.join_ok(Some(&typed), "Bob").await;
    assert_eq!(room_b, room);
    assert_eq!(others, vec![ada_id]);
    match ada.recv().await {
        ServerMessage::PeerJoined { peer } => {
            assert_eq!(peer.id, bob_id);
            assert_eq!(peer.name, "Bob");
        }
        other => panic!("expected peer_joined, got {other:?}"),
    }
    let exchange = [
        (
            SignalPayload::Offer {
                sdp: "v=0 offer".into(),
            },
            true,
        ),
        (
            SignalPayload::Answer {
                sdp: "v=0 answer".into(),
            },
            false,
        ),
        (
            SignalPayload::Candidate {
                candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            },
            true,
        ),
    ];
    for (payload, from_bob) in exchange {
        let (sender, receiver, from, to) = if from_bob {
            (&mut bob, &mut ada, bob_id, ada_id)
        } else {
            (&mut ada, &mut bob, ada_id, bob_id)
        };
        sender
            .send(&ClientMessage::Signal {
                to,
                payload: payload.clone(),
            })
            .await;
        assert_eq!(
            receiver.recv().await,
            ServerMessage::Signal { from, payload }
        );
    }
    bob.send(&ClientMessage::Leave).await;
    assert_eq!(ada.recv().await, ServerMessage::PeerLeft { id: bob_id });
}
