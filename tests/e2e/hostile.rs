//! A hostile signaling relay between two real `confab join --headless` peers and the server: one
//! that pads every description with fingerprint lines DTLS never checks (both sides must still show
//! the same code), and one that swaps the fingerprints for another certificate's (the call must
//! fail its DTLS handshake, or the codes must differ). And one that garbles offers: the peer that
//! receives one says so (to the person and to the other side) and stays in the call until its own
//! wait runs out. And one that loses the first offer, or the first answer, as a signaling socket
//! that died unnoticed does: the offerer sends its offer again and the call connects.

use std::time::Duration;

use confab_e2e::relay::{
    add_fingerprints, garble_offers, lose_first, replace_fingerprints, HostileRelay, Tamper,
};
use confab_e2e::{room_code, serial, test_media, Outcome, Peer, Server};

/// A short call through the relay; the two outcomes.
fn call_through(tamper: Tamper, salt: u64, wait_secs: &str) -> (Outcome, Outcome) {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let relay = HostileRelay::start(&server.url, tamper);
    let room = room_code(salt);
    let args = test_media("320x180", &["--duration", "3", "--wait", wait_secs]);
    let a = Peer::start(dir.path(), "a", &relay.url, &room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start(dir.path(), "b", &relay.url, &room, &args);
    (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    )
}

fn code(outcome: &Outcome) -> Option<String> {
    outcome.stats.as_ref()?["security_code"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn junk_fingerprint_lines_do_not_change_the_code() {
    let (a, b) = call_through(add_fingerprints(8), 71, "30");
    assert!(a.status.success(), "a failed: {}", a.stderr);
    assert!(b.status.success(), "b failed: {}", b.stderr);
    let (ca, cb) = (code(&a), code(&b));
    assert!(ca.is_some(), "a shows no code: {}", a.stderr);
    assert_eq!(ca, cb, "both sides show the same code");
}

#[test]
fn a_swapped_fingerprint_fails_the_call_or_changes_the_code() {
    let (a, b) = call_through(replace_fingerprints(), 72, "15");
    let both_connected = a.status.success() && b.status.success();
    let same_code = code(&a).is_some() && code(&a) == code(&b);
    assert!(
        !(both_connected && same_code),
        "a relay that swapped the fingerprints went unnoticed\na: {}\nb: {}",
        a.stderr,
        b.stderr
    );
    // The way it fails: the DTLS handshake does not complete, so no code is ever shown.
    assert_eq!((code(&a), code(&b)), (None, None));
}

#[test]
fn a_malformed_offer_is_a_notice_not_the_end_of_the_call() {
    let (a, b) = call_through(garble_offers(), 73, "6");
    // `a` waited and received the (garbled) offer of `b`, who arrived second.
    assert!(
        a.stderr
            .contains("the other side sent an offer that cannot be used"),
        "{}",
        a.stderr
    );
    // Neither side ended on the bad description: `a` stayed until its wait ran out, and `b`
    // until `a` left.
    assert!(!a.status.success());
    assert!(
        a.stderr
            .contains("could not connect to the other person within 6 s"),
        "{}",
        a.stderr
    );
    assert!(b.stderr.contains("the other person left"), "{}", b.stderr);
    // `b` heard why no answer came.
    assert!(
        b.stderr
            .contains("the other side says: your offer cannot be used"),
        "{}",
        b.stderr
    );
}

/// The relay loses the first `kind` it delivers; `b` (who offered) must send its offer again, and
/// the call must connect and carry video both ways.
fn call_survives_a_lost(kind: &'static str, salt: u64) {
    let (a, b) = call_through(lose_first(kind), salt, "20");
    for (o, who) in [(&a, "a"), (&b, "b")] {
        assert!(
            o.status.success(),
            "{who} failed after a lost {kind}: {}",
            o.stderr
        );
        let stats = o.stats.as_ref().expect("stats");
        assert!(
            confab_e2e::num(stats, "/video_recv/frames_decoded") > 0.0,
            "{who} got video: {stats:#}"
        );
    }
    assert!(
        b.stderr
            .contains("no answer to our offer yet; sending it again"),
        "{}",
        b.stderr
    );
    assert!(
        !a.stderr.contains("sending it again"),
        "a made no offer to send again: {}",
        a.stderr
    );
}

#[test]
fn a_lost_offer_is_sent_again_and_the_call_connects() {
    call_survives_a_lost("offer", 74);
}

#[test]
fn a_lost_answer_is_made_good_and_the_call_connects() {
    call_survives_a_lost("answer", 75);
}
