//! The DTLS handshake under loss, driven through rtc-dtls's sans-I/O endpoint on a simulated
//! 80 ms round trip with virtual time. It guards the patch in `vendor/rtc-dtls` (its
//! CONFAB-PATCH.md): a client whose Flight 5 is lost must send it again even though the server,
//! whose timer started first, repeats Flight 4 before the client's timer fires. Unpatched, the
//! client never resent it and the server gave up after 8 repeats: about one call in twenty failed
//! to connect at 5% loss.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::crypto::default_provider;
use rtc::dtls::config::{ConfigBuilder, HandshakeConfig};
use rtc::dtls::crypto::Certificate;
use rtc::dtls::endpoint::{Endpoint, EndpointEvent};
use rtc::shared::TransportProtocol;

const ONE_WAY: Duration = Duration::from_millis(40);

fn config(is_client: bool) -> Arc<HandshakeConfig> {
    let provider = default_provider().expect("a crypto provider");
    let certificate = Certificate::generate_self_signed(vec!["confab".into()], provider.crypto())
        .expect("a self-signed certificate");
    let config = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_certificates(vec![certificate])
        .with_insecure_skip_verify(true)
        .build(is_client, None)
        .expect("a DTLS config");
    Arc::new(config)
}

/// A datagram on its way: (arrives at, to the server?, bytes).
type InFlight = VecDeque<(Instant, bool, BytesMut)>;

/// Runs a handshake in which the client's `lose_burst`-th burst of datagrams (1: Flight 1,
/// 2: Flight 3 with the cookie, 3: Flight 5) is lost; returns how long it took to complete on
/// both sides, or why it did not within 20 s.
fn handshake_losing_client_burst(lose_burst: usize) -> Result<Duration, String> {
    let client_addr = SocketAddr::from(([10, 0, 0, 1], 5000));
    let server_addr = SocketAddr::from(([10, 0, 0, 2], 5000));
    let t0 = Instant::now();
    let mut client = Endpoint::new(client_addr, TransportProtocol::UDP, None);
    let mut server = Endpoint::new(server_addr, TransportProtocol::UDP, Some(config(false)));
    client
        .connect(t0, server_addr, config(true), None)
        .map_err(|e| e.to_string())?;
    let mut in_flight: InFlight = VecDeque::new();
    let (mut client_done, mut server_done) = (false, false);
    let mut client_bursts = 0;
    let mut now = t0;
    while now < t0 + Duration::from_secs(20) {
        // What each side has to send now.
        let mut burst = Vec::new();
        while let Some(t) = client.poll_transmit() {
            burst.push(t.message);
        }
        if !burst.is_empty() {
            client_bursts += 1;
            if client_bursts != lose_burst {
                in_flight.extend(burst.into_iter().map(|d| (now + ONE_WAY, true, d)));
            }
        }
        while let Some(t) = server.poll_transmit() {
            in_flight.push_back((now + ONE_WAY, false, t.message));
        }
        if client_done && server_done {
            return Ok(now - t0);
        }
        // The next thing to happen: a datagram arriving or a timer.
        let next = [
            in_flight.iter().map(|(at, _, _)| *at).min(),
            client.poll_timeout(&server_addr),
            server.poll_timeout(&client_addr),
        ]
        .into_iter()
        .flatten()
        .min()
        .ok_or("nothing left to happen: the handshake is stuck")?;
        now = next.max(now);
        let (due, later): (InFlight, InFlight) =
            in_flight.into_iter().partition(|(at, _, _)| *at <= now);
        in_flight = later;
        for (_, to_server, datagram) in due {
            let events = if to_server {
                server.read(now, client_addr, None, datagram)
            } else {
                client.read(now, server_addr, None, datagram)
            }
            .map_err(|e| format!("read: {e}"))?;
            let complete = events
                .iter()
                .any(|e| matches!(e, EndpointEvent::HandshakeComplete));
            if to_server {
                server_done |= complete;
            } else {
                client_done |= complete;
            }
        }
        client
            .handle_timeout(server_addr, now)
            .map_err(|e| format!("client gave up: {e}"))?;
        if server.poll_timeout(&client_addr).is_some() {
            server
                .handle_timeout(client_addr, now)
                .map_err(|e| format!("server gave up at {:?}: {e}", now - t0))?;
        }
    }
    Err(format!(
        "not done in 20 s (client {client_done}, server {server_done})"
    ))
}

#[test]
fn a_clean_handshake_takes_a_few_round_trips() {
    let took = handshake_losing_client_burst(0).expect("the handshake completes");
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

#[test]
fn a_lost_flight_five_is_sent_again() {
    let took = handshake_losing_client_burst(3).expect("the handshake completes");
    // The client's retransmit timer (1 s) brings Flight 5 again.
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn lost_client_hellos_are_sent_again() {
    for burst in [1, 2] {
        let took = handshake_losing_client_burst(burst)
            .unwrap_or_else(|e| panic!("burst {burst} lost: {e}"));
        assert!(
            took < Duration::from_secs(3),
            "burst {burst}: took {took:?}"
        );
    }
}
