//! The real signaling server over real sockets on port 0: rooms, relaying, every kind of bad input,
//! liveness, TLS and health.

// Each test is its own entry point: it may wait on the runtime it drives.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_pair_meets, Client};
use confab_protocol::{
    ClientMessage, ErrorCode, PeerId, ServerMessage, SignalPayload, MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
};
use confab_signaling::{RunningServer, Server, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn start(adjust: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    adjust(&mut config);
    Server::start(config).await.expect("server starts")
}

#[tokio::test]
async fn two_clients_meet_and_swap_messages() {
    // No grace period: Ada's socket closes without a goodbye, and her seat goes with it.
    let server = start(|c| c.resume_grace = Duration::ZERO).await;
    assert_pair_meets(&server.ws_url()).await;
    // Both left or are leaving; the room disappears once empty.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.hub().counts(), (0, 0));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_bad_input_gets_its_error_and_the_server_keeps_serving() {
    let server = start(|_| {}).await;
    let url = server.ws_url();
    let mut c = Client::connect(&url).await;

    c.send_text("{this is not json").await;
    assert!(c
        .expect_error(ErrorCode::BadMessage)
        .await
        .contains("not valid JSON"));
    c.send_text(r#"{"type":"teleport"}"#).await;
    assert!(c
        .expect_error(ErrorCode::UnknownType)
        .await
        .contains("teleport"));
    c.send_text(r#"{"type":"join","version":"one"}"#).await;
    c.expect_error(ErrorCode::BadMessage).await;
    // (A message over MAX_MESSAGE_BYTES now ends the connection: see
    // `a_message_over_the_limit_is_refused_by_its_header_with_a_reason`.)
    c.send_binary(&[1, 2, 3]).await;
    c.expect_error(ErrorCode::BadMessage).await;
    let signal = ClientMessage::Signal {
        to: PeerId(424242),
        payload: SignalPayload::Bye,
    };
    c.send(&signal).await;
    c.expect_error(ErrorCode::NotInRoom).await;
    match c.join(Some("not-a-code!"), "x").await {
        ServerMessage::Error {
            code: ErrorCode::BadRoomCode,
            message,
        } => assert!(message.contains("room code")),
        other => panic!("{other:?}"),
    }
    match c.send_join_version(99).await {
        ServerMessage::Error {
            code: ErrorCode::VersionMismatch,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    // The same connection still works: it joins, then signals a peer who is not there.
    let (room, _, _) = c.join_ok(None, "Carol").await;
    c.send(&signal).await;
    assert!(c
        .expect_error(ErrorCode::UnknownPeer)
        .await
        .contains("not in room"));
    match c.join(Some(room.as_str()), "again").await {
        ServerMessage::Error {
            code: ErrorCode::AlreadyInRoom,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    // A second and a third person: the third is refused.
    let mut d = Client::connect(&url).await;
    d.join_ok(Some(room.as_str()), "Dan").await;
    let mut e = Client::connect(&url).await;
    match e.join(Some(room.as_str()), "Eve").await {
        ServerMessage::Error {
            code: ErrorCode::RoomFull,
            message,
        } => assert!(message.contains("full")),
        other => panic!("{other:?}"),
    }
    c.send_text(r#"{"type":"ping"}"#).await;
    assert!(matches!(c.recv().await, ServerMessage::PeerJoined { .. }));
    assert_eq!(c.recv().await, ServerMessage::Pong);
    // Everyone else is still served.
    assert_pair_meets(&url).await;
    server.shutdown().await.unwrap();
}

/// `{"type":"ping","pad":"xx..."}` of exactly `len` bytes.
fn padded_ping(len: usize) -> String {
    let frame = r#"{"type":"ping","pad":""}"#;
    format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(len - frame.len())
    )
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_by_its_header_with_a_reason() {
    let server = start(|_| {}).await;
    let url = server.ws_url();
    let mut c = Client::connect(&url).await;
    // Exactly the limit is served...
    c.send_text(&padded_ping(MAX_MESSAGE_BYTES)).await;
    assert_eq!(c.recv().await, ServerMessage::Pong);
    // ...one byte more is refused with a reason, and the connection closed.
    c.send_text(&padded_ping(MAX_MESSAGE_BYTES + 1)).await;
    let reason = c.expect_error(ErrorCode::TooLarge).await;
    assert!(reason.contains("over the limit"), "{reason}");
    assert!(
        reason.contains(&format!("{} bytes", MAX_MESSAGE_BYTES + 1)),
        "{reason}"
    );
    c.expect_close(1009).await;
    assert_pair_meets(&url).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_frame_beyond_the_hard_limit_closes_only_that_connection() {
    let server = start(|_| {}).await;
    let url = server.ws_url();
    let mut c = Client::connect(&url).await;
    c.send_text(&"x".repeat(32 * MAX_MESSAGE_BYTES)).await;
    c.expect_close(1009).await;
    assert_pair_meets(&url).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_flooding_client_is_limited_then_cut_off() {
    let server = start(|c| c.rate_per_sec = 10).await;
    let url = server.ws_url();
    let mut flood = Client::connect(&url).await;
    for _ in 0..200 {
        flood.send_text(r#"{"type":"ping"}"#).await;
    }
    // The burst (4 x 10) is answered, then a rate-limit warning, then the connection is closed.
    let mut pongs = 0;
    let mut warned = false;
    loop {
        match flood.next_frame().await {
            tokio_tungstenite::tungstenite::Message::Text(text) => {
                match serde_json::from_str::<ServerMessage>(&text).unwrap() {
                    ServerMessage::Pong => pongs += 1,
                    ServerMessage::Error {
                        code: ErrorCode::RateLimited,
                        ..
                    } => warned = true,
                    other => panic!("{other:?}"),
                }
            }
            tokio_tungstenite::tungstenite::Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 1008, "{}", frame.reason);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(warned, "the client was told it is rate limited");
    assert!(
        (40..=60).contains(&pongs),
        "about a burst of pings was answered: {pongs}"
    );
    assert_pair_meets(&url).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_client_loses_its_seat() {
    let server = start(|c| {
        c.idle_timeout = Duration::from_millis(600);
        // No grace period: the seat is freed as soon as the socket is dropped.
        c.resume_grace = Duration::ZERO;
    })
    .await;
    let url = server.ws_url();
    let mut ada = Client::connect(&url).await;
    let (room, _, _) = ada.join_ok(None, "Ada").await;
    // Bob joins, then never reads nor writes again (so never answers a ping).
    let mut bob = Client::connect(&url).await;
    let (_, bob_id, _) = bob.join_ok(Some(room.as_str()), "Bob").await;
    assert!(matches!(ada.recv().await, ServerMessage::PeerJoined { .. }));
    let mut carol = Client::connect(&url).await;
    assert!(matches!(
        carol.join(Some(room.as_str()), "Carol").await,
        ServerMessage::Error {
            code: ErrorCode::RoomFull,
            ..
        }
    ));
    // Ada keeps answering pings (tungstenite does while she reads) and outlives Bob.
    assert_eq!(ada.recv().await, ServerMessage::PeerLeft { id: bob_id });
    carol.join_ok(Some(room.as_str()), "Carol").await;
    drop(bob);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_tells_clients() {
    let server = start(|_| {}).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.join_ok(None, "Ada").await;
    let stopping = tokio::spawn(server.shutdown());
    assert!(c
        .expect_error(ErrorCode::ServerShutdown)
        .await
        .contains("shutting down"));
    c.expect_close(1001).await;
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn healthz_reports_rooms_and_peers() {
    let server = start(|_| {}).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.join_ok(None, "Ada").await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body: serde_json::Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["rooms"], 1);
    assert_eq!(body["peers"], 1);
    server.shutdown().await.unwrap();
}

async fn http_get(server: &RunningServer, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn the_web_client_is_served() {
    let server = start(|_| {}).await;
    for (path, content_type, marker) in [
        ("/", "text/html", "<script src=\"/confab.js\">"),
        (
            "/join/kfq-wmzt-pxd",
            "text/html",
            "<script src=\"/confab.js\">",
        ),
        ("/confab.js", "text/javascript", "PROTOCOL_VERSION = 1"),
        ("/style.css", "text/css", "{"),
    ] {
        let response = http_get(&server, path).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{path}: {response:.200}"
        );
        assert!(
            response
                .to_lowercase()
                .contains(&format!("content-type: {content_type}")),
            "{path}"
        );
        assert!(response.contains(marker), "{path} lacks {marker:?}");
    }
    assert!(http_get(&server, "/nothing-here")
        .await
        .starts_with("HTTP/1.1 404"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let server = start(|c| c.tls = Some((cert_path.clone(), key_path.clone()))).await;
    let url = server.ws_url();
    assert!(url.starts_with("wss://"), "{url}");
    let url = url.replace("127.0.0.1", "localhost");

    // A client that trusts exactly this certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let connect = |tls: Arc<rustls::ClientConfig>| {
        let url = url.clone();
        async move {
            let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
                url,
                None,
                false,
                Some(tokio_tungstenite::Connector::Rustls(tls)),
            )
            .await
            .expect("wss connect");
            Client { ws }
        }
    };
    let mut ada = connect(tls.clone()).await;
    let mut bob = connect(tls.clone()).await;
    let (room, _, _) = ada.join_ok(None, "Ada").await;
    let (_, _, others) = bob.join_ok(Some(room.as_str()), "Bob").await;
    assert_eq!(others.len(), 1);

    // A plain ws:// client cannot talk to the TLS port.
    let plain = format!("ws://{}/ws", server.local_addr());
    assert!(tokio_tungstenite::connect_async(plain).await.is_err());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_certificate_is_a_clear_error() {
    let result = Server::start({
        let mut c = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        c.tls = Some((
            "/nonexistent/cert.pem".into(),
            "/nonexistent/key.pem".into(),
        ));
        c
    })
    .await;
    let err = result.err().expect("start fails").to_string();
    assert!(
        err.contains("cannot load TLS certificate /nonexistent/cert.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let server = start(|_| {}).await;
    let err = Server::start(ServerConfig::new(server.local_addr()))
        .await
        .err()
        .expect("port taken")
        .to_string();
    assert!(err.contains("cannot listen on"), "{err}");
    server.shutdown().await.unwrap();
}

/// The status line a WebSocket upgrade of /ws gets, sent with `Host: confab.test:8443` and
/// `origin` when given.
async fn upgrade_status(server: &RunningServer, origin: Option<&str>) -> String {
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let origin = origin.map_or_else(String::new, |o| format!("Origin: {o}\r\n"));
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: confab.test:8443\r\n{origin}Connection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).trim().to_owned()
}

#[tokio::test]
async fn a_same_origin_server_refuses_other_web_pages() {
    let server = start(|c| c.same_origin_only = true).await;
    let cases = [
        // A native client sends no Origin.
        (None, "101"),
        // The web client this server served.
        (Some("https://confab.test:8443"), "101"),
        (Some("http://CONFAB.test:8443"), "101"),
        // Any other page the person happens to visit, or an opaque origin.
        (Some("https://evil.example"), "403"),
        (Some("https://confab.test:9999"), "403"),
        (Some("https://confab.test:8443.evil.example"), "403"),
        (Some("null"), "403"),
    ];
    for (origin, status) in cases {
        let line = upgrade_status(&server, origin).await;
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "{origin:?}: {line}"
        );
    }
    server.shutdown().await.unwrap();

    // The standalone server's default: its web client may be pointed at it from elsewhere
    // (`?server=`), so other origins are let in.
    let open = start(|_| {}).await;
    assert!(upgrade_status(&open, Some("https://elsewhere.example"))
        .await
        .starts_with("HTTP/1.1 101"));
    open.shutdown().await.unwrap();
}

/// Joins and returns (my id, resume token).
async fn join_with_token(client: &mut Client, room: Option<&str>, name: &str) -> (PeerId, String) {
    match client.join(room, name).await {
        ServerMessage::Welcome {
            you, resume_token, ..
        } => (you, resume_token.expect("a resume token")),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Resumes with `token`; returns (my id, the others' ids).
async fn resume(client: &mut Client, token: &str) -> (PeerId, Vec<PeerId>) {
    client
        .send(&ClientMessage::Resume {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
        })
        .await;
    match client.recv().await {
        ServerMessage::Welcome { you, peers, .. } => (you, peers.iter().map(|p| p.id).collect()),
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dropped_socket_keeps_its_seat_and_resumes_also_on_a_restarted_server() {
    let config = |c: &mut ServerConfig| {
        c.resume_key = b"the key".to_vec();
        c.resume_grace = Duration::from_millis(800);
    };
    let server = start(config).await;
    let url = server.ws_url();
    let mut ada = Client::connect(&url).await;
    let (ada_id, ada_token) = join_with_token(&mut ada, None, "Ada").await;
    let room = ada_token.split('.').next().expect("the room").to_owned();
    let mut bob = Client::connect(&url).await;
    let (bob_id, bob_token) = join_with_token(&mut bob, Some(&room), "Bob").await;
    assert!(matches!(ada.recv().await, ServerMessage::PeerJoined { .. }));

    // Bob's socket drops: Ada hears he is away, not gone, and he comes back as himself.
    drop(bob);
    assert_eq!(ada.recv().await, ServerMessage::PeerAway { id: bob_id });
    let mut bob = Client::connect(&url).await;
    assert_eq!(resume(&mut bob, &bob_token).await, (bob_id, vec![ada_id]));
    assert_eq!(ada.recv().await, ServerMessage::PeerBack { id: bob_id });
    // A token this server did not sign gets nothing.
    let mut mallory = Client::connect(&url).await;
    mallory
        .send(&ClientMessage::Resume {
            version: PROTOCOL_VERSION,
            token: bob_token.replace(&format!(".{}.", bob_id.0), ".999."),
        })
        .await;
    assert!(matches!(
        mallory.recv().await,
        ServerMessage::Error {
            code: ErrorCode::BadMessage,
            ..
        }
    ));
    drop((ada, bob, mallory));
    server.shutdown().await.unwrap();

    // A restarted server with the same key: both take their seats back, with their ids.
    let server = start(config).await;
    let url = server.ws_url();
    let mut ada = Client::connect(&url).await;
    assert_eq!(resume(&mut ada, &ada_token).await, (ada_id, vec![]));
    let mut bob = Client::connect(&url).await;
    assert_eq!(resume(&mut bob, &bob_token).await, (bob_id, vec![ada_id]));
    assert_eq!(ada.recv().await, ServerMessage::PeerBack { id: bob_id });
    // A newcomer's id is not one of theirs.
    let mut carol = Client::connect(&url).await;
    let (_, carol_id, _) = carol.join_ok(None, "Carol").await;
    assert!(carol_id > bob_id && carol_id > ada_id, "{carol_id}");

    // Bob goes for good: away, then gone once the grace period is over.
    drop(bob);
    assert_eq!(ada.recv().await, ServerMessage::PeerAway { id: bob_id });
    assert_eq!(ada.recv().await, ServerMessage::PeerLeft { id: bob_id });
    server.shutdown().await.unwrap();
}
