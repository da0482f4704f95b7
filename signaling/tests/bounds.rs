//! What the signaling server hands out and how much it takes, over real sockets: short-lived TURN
//! credentials only for a member with company, rate-limited per address; byte floods, oversized
//! frames, sockets that never join and too many connections from one address are cut off while
//! everyone else is still served.

// Each test is its own entry point: it may wait on the runtime it drives.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{assert_pair_meets, Client, TIMEOUT};
use confab_protocol::{ClientMessage, ErrorCode, IceServer, ServerMessage, MAX_MESSAGE_BYTES};
use confab_signaling::{turn, RunningServer, Server, ServerConfig, TurnAuth};
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::{self, Message};

const SECRET: &str = "test-secret";
const TTL: Duration = Duration::from_secs(600);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn start(adjust: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    adjust(&mut config);
    Server::start(config).await.expect("server starts")
}

fn with_turn(config: &mut ServerConfig) {
    config.stun = vec!["stun:stun.example:3478".into()];
    config.turn = vec!["turn:turn.example:3478".into()];
    config.turn_auth = Some(TurnAuth::SharedSecret {
        secret: SECRET.into(),
        ttl: TTL,
    });
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The TURN entry's (username, password), checked to be valid now and to expire within the TTL
/// of `minted_after` (a Unix time taken before the request).
fn check_turn(servers: &[IceServer], minted_after: u64) -> (String, String) {
    let turn = servers
        .iter()
        .find(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .expect("a TURN server");
    let user = turn.username.clone().expect("a username");
    let pass = turn.credential.clone().expect("a credential");
    let expiry: u64 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("expiry:name");
    let now = now_unix();
    assert!(
        expiry >= minted_after + TTL.as_secs() && expiry <= now + TTL.as_secs(),
        "expiry {expiry} is not ttl after now ({minted_after}..{now})"
    );
    assert!(turn::verify_credentials(SECRET, &user, &pass, now));
    assert!(
        !turn::verify_credentials(SECRET, &user, &pass, expiry + 1),
        "worthless after the TTL"
    );
    (user, pass)
}

fn has_turn(servers: &[IceServer]) -> bool {
    servers
        .iter()
        .any(|s| s.username.is_some() || s.credential.is_some())
}

#[tokio::test]
async fn turn_credentials_last_minutes_and_go_only_to_someone_with_company() {
    let server = start(|c| {
        with_turn(c);
        c.turn_mints_per_minute = 5;
    })
    .await;
    let url = server.ws_url();
    let mut ada = Client::connect(&url).await;
    let ServerMessage::Welcome {
        room,
        you: ada_id,
        ice_servers,
        ..
    } = ada.join(None, "Ada").await
    else {
        panic!("no welcome")
    };
    assert!(!has_turn(&ice_servers), "alone: no TURN, {ice_servers:?}");
    assert_eq!(ice_servers.len(), 1, "STUN is still handed out");
    ada.send(&ClientMessage::IceServers).await;
    let refusal = ada.expect_error(ErrorCode::NotInRoom).await;
    assert!(refusal.contains("no one else"), "{refusal}");

    // Bob joins: his welcome carries credentials minted for him, and Ada gets hers.
    let before = now_unix();
    let mut bob = Client::connect(&url).await;
    let ServerMessage::Welcome {
        you: bob_id,
        ice_servers,
        ..
    } = bob.join(Some(room.as_str()), "Bob").await
    else {
        panic!("no welcome")
    };
    let (bob_user, _) = check_turn(&ice_servers, before);
    assert!(
        bob_user.ends_with(&format!(":{room}/{bob_id}")),
        "{bob_user}"
    );
    assert!(matches!(ada.recv().await, ServerMessage::PeerJoined { .. }));
    let ServerMessage::IceServers { ice_servers } = ada.recv().await else {
        panic!("no ice servers for Ada")
    };
    let (ada_user, _) = check_turn(&ice_servers, before);
    assert!(
        ada_user.ends_with(&format!(":{room}/{ada_id}")),
        "{ada_user}"
    );

    // Ada asks for fresh ones (before an ICE restart): a burst of five gets the three left of
    // the address's five a minute (two went to the joins), then errors.
    for _ in 0..5 {
        ada.send(&ClientMessage::IceServers).await;
    }
    let mut fresh = 0;
    let mut refused = 0;
    for _ in 0..5 {
        match ada.recv().await {
            ServerMessage::IceServers { ice_servers } => {
                check_turn(&ice_servers, before);
                fresh += 1;
            }
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                message,
            } => {
                assert!(message.contains("5 a minute"), "{message}");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((fresh, refused), (3, 2));
    // The refusals cost Ada nothing else: she is still served.
    ada.send(&ClientMessage::Ping).await;
    assert_eq!(ada.recv().await, ServerMessage::Pong);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_flood_of_bytes_is_cut_off_while_others_are_served() {
    let server = start(|_| {}).await;
    let url = server.ws_url();
    let mut ada = Client::connect(&url).await;
    let mut bob = Client::connect(&url).await;
    let (room, ada_id, _) = ada.join_ok(None, "Ada").await;
    let (_, bob_id, _) = bob.join_ok(Some(room.as_str()), "Bob").await;
    assert!(matches!(ada.recv().await, ServerMessage::PeerJoined { .. }));

    // Few messages (well within the message rate), but 60 KiB each: far over 32 KiB/s.
    let mut flood = Client::connect(&url).await;
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(60 * 1024));
    for _ in 0..40 {
        if futures_util::SinkExt::send(&mut flood.ws, Message::Text(big.clone().into()))
            .await
            .is_err()
        {
            break; // already cut off
        }
    }
    let mut pongs = 0;
    let mut warned = false;
    let reason = loop {
        match flood.next_frame().await {
            Message::Text(text) => match serde_json::from_str::<ServerMessage>(&text).unwrap() {
                ServerMessage::Pong => pongs += 1,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    message,
                } => {
                    assert!(message.contains("too many bytes"), "{message}");
                    warned = true;
                }
                other => panic!("{other:?}"),
            },
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 1008, "{}", frame.reason);
                break frame.reason.to_string();
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(reason.contains("too many bytes"), "{reason}");
    assert!(warned, "the client was told before being cut off");
    assert!(
        (1..10).contains(&pongs),
        "a burst's worth of bytes was served, not the flood: {pongs}"
    );

    // The pair in the room goes on, and new people are served.
    bob.send(&ClientMessage::Signal {
        to: ada_id,
        payload: confab_protocol::SignalPayload::Bye,
    })
    .await;
    assert_eq!(
        ada.recv().await,
        ServerMessage::Signal {
            from: bob_id,
            payload: confab_protocol::SignalPayload::Bye
        }
    );
    assert_pair_meets(&url).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_oversized_frame_is_refused_by_its_header_while_still_being_sent() {
    let server = start(|_| {}).await;
    let url = server.ws_url();
    let mut c = Client::connect(&url).await;
    // A masked text frame announcing 1 MiB, of which only 16 KiB is sent: the server must answer
    // without waiting for (or buffering) the rest.
    let announced: u64 = 1 << 20;
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&announced.to_be_bytes());
    frame.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    frame.extend(std::iter::repeat_n(b'x', 16 * 1024));
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = c.ws.get_mut() else {
        panic!("plain ws:// expected")
    };
    tcp.write_all(&frame).await.unwrap();
    tcp.flush().await.unwrap();

    let reason = c.expect_error(ErrorCode::TooLarge).await;
    assert!(
        reason.contains(&format!("{announced} bytes")) && reason.contains("over the limit"),
        "{reason}"
    );
    assert!(reason.contains(&MAX_MESSAGE_BYTES.to_string()), "{reason}");
    let close = c.expect_close_reason(1009).await;
    assert!(close.contains("too large"), "{close}");
    assert_pair_meets(&url).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_socket_outside_a_room_is_closed_after_the_join_timeout() {
    let server = start(|c| c.join_timeout = Duration::from_millis(300)).await;
    let url = server.ws_url();
    let mut ada = Client::connect(&url).await;
    ada.join_ok(None, "Ada").await;

    // Connected but never joining: served meanwhile, then closed with a reason.
    let mut lurker = Client::connect(&url).await;
    lurker.send(&ClientMessage::Ping).await;
    assert_eq!(lurker.recv().await, ServerMessage::Pong);
    let reason = lurker.expect_close_reason(1008).await;
    assert!(reason.contains("did not join"), "{reason}");

    // Leaving starts the clock again.
    let mut leaver = Client::connect(&url).await;
    leaver.join_ok(None, "Lea").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    leaver.send(&ClientMessage::Leave).await;
    let reason = leaver.expect_close_reason(1008).await;
    assert!(reason.contains("did not join"), "{reason}");

    // Ada, in a room all along, outlived both.
    ada.send(&ClientMessage::Ping).await;
    assert_eq!(ada.recv().await, ServerMessage::Pong);
    server.shutdown().await.unwrap();
}

/// The HTTP status and body of a refused WebSocket handshake.
fn refusal(result: Result<Client, tungstenite::Error>) -> (u16, String) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a connection"),
    }
}

#[tokio::test]
async fn connections_are_capped_per_address_and_everyone_else_is_served() {
    let server = start(|c| c.max_conns_per_ip = 3).await;
    let url = server.ws_url();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::try_connect_from(&url, LOCALHOST).await.unwrap());
    }
    let (status, body) = refusal(Client::try_connect_from(&url, LOCALHOST).await);
    assert_eq!(status, 503);
    assert!(
        body.contains("too many connections from your address"),
        "{body}"
    );
    assert!(body.contains('3'), "{body}");

    // Another address is served, and so are the three already connected.
    let other: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
    let mut ada = Client::try_connect_from(&url, other).await.unwrap();
    let (room, _, _) = ada.join_ok(None, "Ada").await;
    let (_, _, others) = held[0].join_ok(Some(room.as_str()), "Bob").await;
    assert_eq!(others.len(), 1);
    for c in &mut held[1..] {
        c.send(&ClientMessage::Ping).await;
        assert_eq!(c.recv().await, ServerMessage::Pong);
    }

    // A connection that ends frees its place.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match Client::try_connect_from(&url, LOCALHOST).await {
            Ok(c) => {
                held.push(c);
                break;
            }
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "never freed: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_are_capped_in_total() {
    let server = start(|c| c.max_conns = 2).await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    let _b = Client::try_connect_from(&url, Ipv4Addr::new(127, 0, 0, 2).into())
        .await
        .unwrap();
    let (status, body) =
        refusal(Client::try_connect_from(&url, Ipv4Addr::new(127, 0, 0, 3).into()).await);
    assert_eq!(status, 503);
    assert!(body.contains("server is full"), "{body}");
    a.send(&ClientMessage::Ping).await;
    assert_eq!(a.recv().await, ServerMessage::Pong);
    server.shutdown().await.unwrap();
}
