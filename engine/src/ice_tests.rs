//! ICE when the two sides' candidates arrive far apart, driven through rtc-ice's sans-I/O agent
//! on a simulated 500 ms round trip with virtual time. It guards the patch in `vendor/rtc-ice`
//! (its CONFAB-PATCH.md): the controlling side checks each pair at most `ICE_MAX_CHECKS` times, 20 ms
//! apart, and a pair whose checks all went unanswered is failed. When the other side learns our
//! candidates later (its signaling crossed a lossy link), its checks reach us only after ours
//! have all been spent: its NAT dropped them until it had sent to us. Unpatched, those checks
//! were answered but did not revive the failed pair, nothing was nominated, and the call never
//! connected (one call in twelve on the very-bad link).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::crypto::default_provider;
use rtc::ice::candidate::candidate_host::CandidateHostConfig;
use rtc::ice::candidate::CandidateConfig;
use rtc::ice::state::ConnectionState;
use rtc::ice::{Agent, AgentConfig, Event};
use rtc::sansio::Protocol;
use rtc::shared::{TransportContext, TransportMessage, TransportProtocol};

use crate::peer::{ICE_CHECK_INTERVAL, ICE_MAX_CHECKS};

const ONE_WAY: Duration = Duration::from_millis(250);

fn agent(now: Instant, addr: SocketAddr) -> Agent {
    let config = AgentConfig {
        urls: vec![],
        check_interval: ICE_CHECK_INTERVAL,
        max_binding_requests: Some(ICE_MAX_CHECKS),
        ..Default::default()
    };
    let provider = default_provider().expect("a crypto provider");
    let mut agent = Agent::new(now, Arc::new(config), provider).expect("an ICE agent");
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .expect("a host candidate");
    agent
        .add_local_candidate(host)
        .expect("the candidate is added");
    agent
}

/// A datagram on its way: (arrives at, to Alice?, from, to, bytes).
type InFlight = VecDeque<(Instant, bool, SocketAddr, SocketAddr, BytesMut)>;

/// Bob (controlling) learns Alice's candidate at once, Alice (controlled) learns Bob's
/// `alice_late` later. Alice's NAT lets a packet from Bob in only once she has sent one to him.
/// Returns when both sides were connected, or why not within 20 s.
fn connect(alice_late: Duration) -> Result<Duration, String> {
    let alice_addr = SocketAddr::from(([10, 0, 0, 1], 5000));
    let bob_addr = SocketAddr::from(([10, 0, 0, 2], 5000));
    let t0 = Instant::now();
    let mut alice = agent(t0, alice_addr);
    let mut bob = agent(t0, bob_addr);
    let (alice_creds, bob_creds) = (
        alice.get_local_credentials().clone(),
        bob.get_local_credentials().clone(),
    );
    bob.start_connectivity_checks(t0, true, alice_creds.ufrag, alice_creds.pwd)
        .map_err(|e| e.to_string())?;
    alice
        .start_connectivity_checks(t0, false, bob_creds.ufrag, bob_creds.pwd)
        .map_err(|e| e.to_string())?;
    let alice_candidate = alice.get_local_candidates()[0].clone();
    let bob_candidate = bob.get_local_candidates()[0].clone();
    bob.add_remote_candidate(alice_candidate)
        .map_err(|e| e.to_string())?;
    let mut bob_known_to_alice = false;
    let mut alice_nat_open = false;
    let mut in_flight: InFlight = VecDeque::new();
    let (mut alice_connected, mut bob_connected) = (false, false);
    let mut now = t0;
    while now < t0 + Duration::from_secs(20) {
        if !bob_known_to_alice && now >= t0 + alice_late {
            bob_known_to_alice = true;
            alice
                .add_remote_candidate(bob_candidate.clone())
                .map_err(|e| e.to_string())?;
        }
        while let Some(t) = alice.poll_write() {
            alice_nat_open |= t.transport.peer_addr == bob_addr;
            in_flight.push_back((now + ONE_WAY, false, alice_addr, bob_addr, t.message));
        }
        while let Some(t) = bob.poll_write() {
            in_flight.push_back((now + ONE_WAY, true, bob_addr, alice_addr, t.message));
        }
        while let Some(e) = alice.poll_event() {
            alice_connected |= matches!(
                e.event,
                Event::ConnectionStateChange(ConnectionState::Connected)
            );
        }
        while let Some(e) = bob.poll_event() {
            bob_connected |= matches!(
                e.event,
                Event::ConnectionStateChange(ConnectionState::Connected)
            );
        }
        if alice_connected && bob_connected {
            return Ok(now - t0);
        }
        // Deliver what has arrived.
        let mut still = VecDeque::new();
        while let Some((at, to_alice, from, to, bytes)) = in_flight.pop_front() {
            if at > now {
                still.push_back((at, to_alice, from, to, bytes));
                continue;
            }
            let msg = TransportMessage {
                now,
                transport: TransportContext {
                    local_addr: to,
                    peer_addr: from,
                    transport_protocol: TransportProtocol::UDP,
                    ecn: None,
                },
                message: bytes,
            };
            // Errors are packets an agent ignores (a check for an unknown pair, say).
            if to_alice {
                if alice_nat_open {
                    let _ = alice.handle_read(msg);
                }
            } else {
                let _ = bob.handle_read(msg);
            }
        }
        in_flight = still;
        let _ = alice.handle_timeout(now);
        let _ = bob.handle_timeout(now);
        now += Duration::from_millis(5);
    }
    Err(format!(
        "not connected after 20 s (alice {alice_connected}, bob {bob_connected})"
    ))
}

#[test]
fn candidates_that_arrive_together_connect() {
    let took = connect(Duration::ZERO).expect("connected");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_side_whose_checks_all_failed_answers_the_late_side_and_connects() {
    // Bob's 50 checks (1 s) are spent before Alice even knows where he is.
    let took = connect(Duration::from_millis(1500)).expect("connected");
    assert!(took < Duration::from_secs(4), "{took:?}");
}
