//! TURN through a real coturn that authenticates with a shared secret: the signaling server mints
//! per-client credentials (username = expiry:name, password = base64(HMAC-SHA1)), hands them out
//! with the ICE servers, and two peers that may only use relay candidates connect through coturn.
//! A server with the wrong secret gets its clients refused.

use std::time::Duration;

use confab_e2e::services::Coturn;
use confab_e2e::{num, room_code, serial, test_media, Peer, Server};

const SECRET: &str = "correct horse battery staple";

fn relay_call(
    server_secret: &str,
    salt: u64,
) -> (confab_e2e::Outcome, confab_e2e::Outcome, Coturn) {
    let coturn = Coturn::start(SECRET);
    let turn = format!("turn:127.0.0.1:{}?transport=udp", coturn.port);
    let server = Server::start(&["--turn", &turn, "--turn-secret", server_secret]);
    let dir = tempfile::tempdir().unwrap();
    let room = room_code(salt);
    let args = test_media(
        "320x180",
        &["--relay-only", "--duration", "4", "--wait", "12"],
    );
    let a = Peer::start(dir.path(), "a", &server.url, &room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start(dir.path(), "b", &server.url, &room, &args);
    (
        a.finish(Duration::from_secs(40)),
        b.finish(Duration::from_secs(40)),
        coturn,
    )
}

#[test]
fn peers_connect_through_coturn_with_minted_credentials() {
    let _machine = serial();
    let (a, b, coturn) = relay_call(SECRET, 91);
    assert!(
        a.status.success(),
        "a: {}\ncoturn: {}",
        a.stderr,
        coturn.log()
    );
    assert!(b.status.success(), "b: {}", b.stderr);
    for s in [a.stats.unwrap(), b.stats.unwrap()] {
        assert_eq!(s["ice"]["local_candidate_type"], "relay", "{:#}", s["ice"]);
        assert!(
            num(&s, "/video_recv/frames_decoded") > 30.0,
            "media flowed through the relay: {s:#}"
        );
    }
    // The same call with credentials minted from another secret fails (the next test): coturn
    // really checked these.
    drop(coturn);
}

#[test]
fn credentials_from_the_wrong_secret_are_refused() {
    let _machine = serial();
    let (a, b, _coturn) = relay_call("not the secret", 92);
    assert!(
        !a.status.success() && !b.status.success(),
        "relay-only peers must fail when TURN refuses them"
    );
    assert!(
        a.stderr.contains("ICE") || a.stderr.contains("could not connect"),
        "{}",
        a.stderr
    );
}
