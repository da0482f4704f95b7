//! `netprobe`: the UDP traffic the network-emulator tests measure with, run in the emulator's
//! namespaces: `serve` (bob) punches through its NAT, echoes pings and counts data packets;
//! `ping` and `send` (alice) open the path, then measure round trips or push paced data.
//! Each prints one JSON line on stdout with what it saw.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// First byte of every datagram.
const PUNCH: u8 = b'H';
const PING: u8 = b'P';
const DATA: u8 = b'D';

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        usage("no command");
    };
    let flags = parse_flags(rest);
    let socket =
        UdpSocket::bind(addr(&flags, "bind")).unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let peer = addr(&flags, "peer");
    match command.as_str() {
        "serve" => serve(
            &socket,
            peer,
            Duration::from_millis(number(&flags, "idle-ms", 1500)),
        ),
        "ping" => ping(
            &socket,
            peer,
            number(&flags, "count", 20),
            Duration::from_millis(number(&flags, "interval-ms", 50)),
        ),
        "send" => send(
            &socket,
            peer,
            number(&flags, "count", 1000),
            number(&flags, "rate-kbps", 1000),
            number(&flags, "size", 1200),
        ),
        other => usage(&format!("unknown command {other:?}")),
    }
}

fn usage(why: &str) -> ! {
    fail(&format!(
        "{why}\nusage: netprobe serve --bind ADDR --peer ADDR [--idle-ms N]\n       \
         netprobe ping --bind ADDR --peer ADDR [--count N] [--interval-ms N]\n       \
         netprobe send --bind ADDR --peer ADDR [--count N] [--rate-kbps N] [--size BYTES]"
    ))
}

fn fail(message: &str) -> ! {
    eprintln!("netprobe: {message}");
    std::process::exit(2)
}

fn parse_flags(rest: &[String]) -> HashMap<String, String> {
    let mut flags = HashMap::new();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let Some(name) = flag.strip_prefix("--") else {
            usage(&format!("expected a --flag, got {flag:?}"));
        };
        let Some(value) = it.next() else {
            usage(&format!("--{name} needs a value"));
        };
        flags.insert(name.to_owned(), value.clone());
    }
    flags
}

fn addr(flags: &HashMap<String, String>, name: &str) -> SocketAddr {
    let Some(text) = flags.get(name) else {
        usage(&format!("--{name} is required"));
    };
    text.parse()
        .unwrap_or_else(|e| usage(&format!("--{name} {text:?}: {e}")))
}

fn number(flags: &HashMap<String, String>, name: &str, default: u64) -> u64 {
    flags.get(name).map_or(default, |text| {
        text.parse()
            .unwrap_or_else(|e| usage(&format!("--{name} {text:?}: {e}")))
    })
}

/// Echoes pings, counts data; punches towards `peer` until it hears from it (so the NAT in front
/// of us lets the peer in). Ends `idle` after the last packet, or after 60 s of nothing.
fn serve(socket: &UdpSocket, peer: SocketAddr, idle: Duration) {
    let started = Instant::now();
    let mut heard = false;
    let (mut packets, mut bytes, mut pings) = (0u64, 0u64, 0u64);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    let mut last_heard: Option<Instant> = None;
    let mut seqs = std::collections::HashSet::new();
    let mut buf = [0u8; 65536];
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap_or_else(|e| fail(&format!("timeout: {e}")));
    loop {
        if !heard {
            // Opens our NAT towards the peer's public address (its router drops these until the
            // peer's own packets open its side: then the path works both ways).
            let _ = socket.send_to(&[PUNCH], peer);
        }
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if n > 0 => {
                heard = true;
                last_heard = Some(Instant::now());
                match buf[0] {
                    PING => {
                        pings += 1;
                        let _ = socket.send_to(&buf[..n], from);
                    }
                    DATA if n >= 5 => {
                        let now = Instant::now();
                        first.get_or_insert(now);
                        last = Some(now);
                        packets += 1;
                        bytes += n as u64;
                        seqs.insert(u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        let done = match last_heard {
            Some(last) => last.elapsed() > idle,
            None => started.elapsed() > Duration::from_secs(60),
        };
        if done {
            break;
        }
    }
    let span_ms = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64() * 1e3,
        _ => 0.0,
    };
    // Runs of consecutive missing sequence numbers up to the highest one seen (how bursty the loss is).
    let highest = seqs.iter().max().copied();
    let mut loss_runs = 0u64;
    if let Some(highest) = highest {
        let mut in_run = false;
        for seq in 0..=highest {
            let missing = !seqs.contains(&seq);
            if missing && !in_run {
                loss_runs += 1;
            }
            in_run = missing;
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "data_packets": packets, "distinct_seqs": seqs.len(), "data_bytes": bytes,
            "span_ms": span_ms, "pings": pings, "highest_seq": highest, "loss_runs": loss_runs,
        })
    );
}

/// Pings every 50 ms until the first echo (the path is open), then returns the time that took.
/// The peer's punches arrive meanwhile, so reading must not hold up the next ping.
fn open_path(socket: &UdpSocket, peer: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap_or_else(|e| fail(&format!("timeout: {e}")));
    let mut next_ping = started;
    while started.elapsed() < Duration::from_secs(10) {
        if Instant::now() >= next_ping {
            let _ = socket.send_to(&[PING, 0xff], peer);
            next_ping += Duration::from_millis(50);
        }
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if n >= 1 && buf[0] == PING {
                return started.elapsed();
            }
        }
    }
    fail(&format!("no echo from {peer} within 10 s"))
}

/// `count` pings `interval` apart; prints each round trip in ms (lost ones are missing).
fn ping(socket: &UdpSocket, peer: SocketAddr, count: u64, interval: Duration) {
    open_path(socket, peer);
    let started = Instant::now();
    let mut sent_at = Vec::new();
    let mut rtts_ms = Vec::new();
    let mut buf = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap_or_else(|e| fail(&format!("timeout: {e}")));
    let deadline = started + interval * count as u32 + Duration::from_secs(2);
    while Instant::now() < deadline && rtts_ms.len() < count as usize {
        let due = sent_at.len() < count as usize
            && started + interval * sent_at.len() as u32 <= Instant::now();
        if due {
            let seq = sent_at.len() as u32;
            let mut packet = vec![PING, 0];
            packet.extend_from_slice(&seq.to_be_bytes());
            let _ = socket.send_to(&packet, peer);
            sent_at.push(Instant::now());
        }
        // Echoes carry our sequence number; the path-opening ones (marked 0xff) are stale.
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if n == 6 && buf[0] == PING && buf[1] == 0 {
                let seq = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
                if let Some(at) = sent_at.get(seq) {
                    rtts_ms.push(at.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({ "sent": sent_at.len(), "rtt_ms": rtts_ms })
    );
}

/// `count` data packets of `size` bytes paced at `rate_kbps`, numbered from 0.
fn send(socket: &UdpSocket, peer: SocketAddr, count: u64, rate_kbps: u64, size: u64) {
    open_path(socket, peer);
    let size = size.clamp(5, 1400) as usize;
    let gap = Duration::from_secs_f64(size as f64 * 8.0 / (rate_kbps.max(1) as f64 * 1e3));
    let started = Instant::now();
    let mut packet = vec![0u8; size];
    packet[0] = DATA;
    for seq in 0..count {
        let due = started + gap.mul_f64(seq as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        packet[1..5].copy_from_slice(&(seq as u32).to_be_bytes());
        let _ = socket.send_to(&packet, peer);
    }
    println!(
        "{}",
        serde_json::json!({ "sent": count, "seconds": started.elapsed().as_secs_f64() })
    );
}
