//! A team's own signaling server with a self-signed certificate, through the real binaries:
//! `confab join` with the certificate's SHA-256 (in the address, or as `--server-cert-sha256`)
//! joins and calls; a wrong pin, or none, is refused with a sentence saying why.

use std::time::Duration;

use confab_e2e::{num, room_code, serial, test_media, Peer, Server};
use confab_signaling::tls::{self_signed, SelfSigned};

fn tls_server(cert: &SelfSigned) -> Server {
    let server = Server::start(&[
        "--tls-cert",
        cert.cert.to_str().unwrap(),
        "--tls-key",
        cert.key.to_str().unwrap(),
    ]);
    assert!(server.url.starts_with("wss://"), "{}", server.url);
    server
}

#[test]
fn a_pinned_self_signed_server_carries_the_call() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(&dir.path().join("server")).unwrap();
    let server = tls_server(&cert);
    let room = room_code(151);
    let args = test_media("320x180", &["--duration", "3", "--wait", "30"]);
    // One pins through the address it was given, the other through the flag (with colons).
    let in_address = format!("{}#sha256={}", server.url, cert.sha256);
    let a = Peer::start(dir.path(), "a", &in_address, &room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let colons = cert
        .sha256
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(":")
        .to_uppercase();
    let mut flagged = args.clone();
    flagged.extend(["--server-cert-sha256", &colons]);
    let b = Peer::start(dir.path(), "b", &server.url, &room, &flagged);
    for (name, outcome) in [
        ("a", a.finish(Duration::from_secs(60))),
        ("b", b.finish(Duration::from_secs(60))),
    ] {
        assert!(outcome.status.success(), "{name}: {}", outcome.stderr);
        let stats = outcome.stats.expect("stats");
        assert!(
            num(&stats, "/video_recv/frames_decoded") > 30.0,
            "{name}: {stats:#}"
        );
    }
}

#[test]
fn a_wrong_pin_or_none_is_refused_with_the_reason() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(&dir.path().join("server")).unwrap();
    let server = tls_server(&cert);
    let room = room_code(152);
    let args = test_media("320x180", &["--duration", "2", "--wait", "5"]);

    let wrong = format!("{}#sha256={}", server.url, "00".repeat(32));
    let refused =
        Peer::start(dir.path(), "wrong", &wrong, &room, &args).finish(Duration::from_secs(30));
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("not the pinned one") && refused.stderr.contains(&cert.sha256),
        "the refusal names the certificate it saw: {}",
        refused.stderr
    );

    let unpinned =
        Peer::start(dir.path(), "none", &server.url, &room, &args).finish(Duration::from_secs(30));
    assert!(!unpinned.status.success());
    assert!(
        unpinned.stderr.to_lowercase().contains("certificate"),
        "an untrusted self-signed certificate is named as the reason: {}",
        unpinned.stderr
    );
}
