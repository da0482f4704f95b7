//! NAT traversal in a `NetLab` whose public network runs coturn as a full TURN server (shared
//! secret; the signaling server mints time-limited credentials): behind cone NATs the peers
//! connect directly although a relay is on offer; behind symmetric NATs they connect through it.

use std::net::Ipv4Addr;
use std::time::Duration;

use confab_e2e::netem::{Nat, NetLab, Profile, Side, PUBLIC_ADDR};
use confab_e2e::{num, room_code, serial, test_media, Outcome, Peer};
use serde_json::Value;

/// coturn's shared secret in these labs.
const SECRET: &str = "nat-test-secret";

/// A short call between the two homes of a lab of `kind` NATs, with TURN on offer.
fn call(kind: Nat, salt: u64) -> (NetLab, Outcome, Outcome) {
    let mut lab = NetLab::with_nat(kind, Profile::GOOD);
    lab.start_turn(SECRET);
    let server = lab.start_signaling(&[]);
    let dir = tempfile::tempdir().unwrap();
    let room = room_code(salt);
    let args = test_media("320x180", &["--duration", "3", "--wait", "20"]);
    let a = Peer::start_in(lab.alice(), dir.path(), "alice", &server.url, &room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start_in(lab.bob(), dir.path(), "bob", &server.url, &room, &args);
    let (a, b) = (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    );
    for (o, who) in [(&a, "alice"), (&b, "bob")] {
        assert!(
            o.status.success(),
            "{who}: {}\ncoturn:\n{}",
            o.stderr,
            lab.coturn_log()
        );
    }
    (lab, a, b)
}

fn stats(o: &Outcome) -> &Value {
    o.stats.as_ref().expect("stats")
}

/// The selected pair's field as a string (panics, naming the pair, when it is not filled).
fn field<'a>(ice: &'a Value, name: &str, who: &str) -> &'a str {
    ice[name]
        .as_str()
        .unwrap_or_else(|| panic!("{who}: {name} not filled in {ice}"))
}

/// The IP of an `ip:port` the stats name.
fn ip(address: &str) -> Ipv4Addr {
    address
        .rsplit_once(':')
        .and_then(|(ip, _)| ip.parse().ok())
        .unwrap_or_else(|| panic!("not an ip:port: {address}"))
}

#[test]
fn cone_nat_connects_directly_although_a_relay_is_on_offer() {
    let _machine = serial();
    let (lab, a, b) = call(Nat::Cone, 1131);
    for (o, me, other) in [(&a, Side::Alice, Side::Bob), (&b, Side::Bob, Side::Alice)] {
        let who = format!("{me:?}");
        let ice = &stats(o)["ice"];
        eprintln!("cone NAT, {who}: selected pair {ice}");
        for end in ["local_candidate_type", "remote_candidate_type"] {
            let kind = field(ice, end, &who);
            assert!(
                ["host", "srflx", "prflx"].contains(&kind),
                "{who}: {end} is {kind}, not a direct path: {ice}"
            );
        }
        // Straight from our home to the other's router: no relay in between.
        let local = ip(field(ice, "local_address", &who));
        let remote = ip(field(ice, "remote_address", &who));
        assert!(
            local == lab.home(me).addr || local == lab.public_addr(me),
            "{who}: local end {local} is neither our address nor our router's: {ice}"
        );
        assert_eq!(
            remote,
            lab.public_addr(other),
            "{who}: the remote end is the other home's router: {ice}"
        );
        assert!(
            num(stats(o), "/video_recv/frames_decoded") > 0.0,
            "{who} decoded video: {:#}",
            stats(o)["video_recv"]
        );
    }
}

#[test]
fn symmetric_nat_with_turn_connects_through_the_relay() {
    let _machine = serial();
    let (lab, a, b) = call(Nat::Symmetric, 1132);
    for (o, who) in [(&a, "alice"), (&b, "bob")] {
        let ice = &stats(o)["ice"];
        eprintln!("symmetric NAT, {who}: selected pair {ice}");
        let local = field(ice, "local_candidate_type", who);
        let remote = field(ice, "remote_candidate_type", who);
        assert!(
            local == "relay" || remote == "relay",
            "{who}: neither end of the selected pair is a relay: {ice}"
        );
        // A relayed end is named by the relay's address, in the public network.
        let relayed = if local == "relay" {
            "local_address"
        } else {
            "remote_address"
        };
        assert_eq!(
            ip(field(ice, relayed, who)),
            PUBLIC_ADDR,
            "{who}: the relay's address: {ice}"
        );
        assert!(
            num(stats(o), "/video_recv/frames_decoded") > 0.0,
            "{who} decoded video through the relay: {:#}",
            stats(o)["video_recv"]
        );
    }
    // coturn really relayed: it granted allocations to credentials the server minted.
    let log = lab.coturn_log();
    assert!(
        log.contains("ALLOCATE") && log.contains("success"),
        "coturn allocated relays: {log}"
    );
}
