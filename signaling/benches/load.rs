//! Load benchmark for the signaling server (a program, not a test): starts the real
//! `confab-signal` binary, holds N concurrent WebSocket clients in N/2 rooms, and prints connect,
//! join and relay latency percentiles and the server's memory per connection.
//!
//!     cargo bench -p confab-signaling --bench load -- [CLIENTS] [CONCURRENCY]
//!
//! Defaults: 10000 clients, 256 operations in flight. Raises its own open-file limit.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_protocol::{ClientMessage, ServerMessage, SignalPayload, PROTOCOL_VERSION};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Server(std::process::Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<8} n={:<6} p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
    );
}

async fn recv(ws: &mut Ws) -> ServerMessage {
    loop {
        match ws.next().await.expect("socket open").expect("socket ok") {
            Message::Text(text) => return serde_json::from_str(&text).expect("valid message"),
            _ => continue,
        }
    }
}

async fn send(ws: &mut Ws, msg: &ClientMessage) {
    ws.send(Message::Text(serde_json::to_string(msg).unwrap().into()))
        .await
        .expect("send");
}

// The benchmark's entry point waits on its runtime.
#[allow(clippy::disallowed_methods)]
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let clients: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000) & !1;
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let wanted = (clients as u64) * 2 + 1024;
    let _ = rlimit::increase_nofile_limit(wanted);
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((0, 0));
    assert!(
        soft >= clients as u64 + 64,
        "open-file limit {soft} is too low for {clients} clients"
    );

    // Every client comes from 127.0.0.1: lift the per-address cap (and the total, for runs above
    // the default 20,000) to hold them all, and give the slowest connect phase time to finish
    // before anyone joins.
    let cap = (clients + 64).to_string();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_confab-signal"))
            .args(["--listen", "127.0.0.1:0", "--idle-timeout", "120"])
            .args(["--join-timeout", "300"])
            .args(["--max-conns-per-ip", &cap, "--max-conns", &cap])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start confab-signal"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .to_owned();
    let pid = server.0.id();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle = rss_kib(pid);
    println!(
        "confab-signal pid {pid} at {url}: {clients} clients in {} rooms, {concurrency} in flight",
        clients / 2
    );

    // Connect everyone.
    let gate = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let gate = gate.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let t = Instant::now();
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("connect");
            (ws, t.elapsed())
        }));
    }
    let mut sockets = Vec::with_capacity(clients);
    let mut connect = Vec::with_capacity(clients);
    for task in tasks {
        let (ws, took) = task.await.unwrap();
        sockets.push(ws);
        connect.push(took);
    }
    let connect_wall = started.elapsed();

    // Join in pairs: the first of each pair makes a room, the second joins it and signals the first.
    let started = Instant::now();
    let mut pairs = Vec::with_capacity(clients / 2);
    let mut it = sockets.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        let gate = gate.clone();
        pairs.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let (mut a, mut b) = (a, b);
            let join = |room: Option<String>| ClientMessage::Join {
                version: PROTOCOL_VERSION,
                room,
                name: Some("load".into()),
            };
            let t = Instant::now();
            send(&mut a, &join(None)).await;
            let ServerMessage::Welcome {
                room, you: a_id, ..
            } = recv(&mut a).await
            else {
                panic!("no welcome")
            };
            let join_a = t.elapsed();
            let t = Instant::now();
            send(&mut b, &join(Some(room.to_string()))).await;
            let ServerMessage::Welcome { .. } = recv(&mut b).await else {
                panic!("no welcome")
            };
            let join_b = t.elapsed();
            let ServerMessage::PeerJoined { .. } = recv(&mut a).await else {
                panic!("no peer_joined")
            };
            let t = Instant::now();
            send(
                &mut b,
                &ClientMessage::Signal {
                    to: a_id,
                    payload: SignalPayload::Offer { sdp: "v=0".into() },
                },
            )
            .await;
            let ServerMessage::Signal { .. } = recv(&mut a).await else {
                panic!("no signal")
            };
            let relay = t.elapsed();
            (a, b, [join_a, join_b], relay)
        }));
    }
    let mut joins = Vec::with_capacity(clients);
    let mut relays = Vec::with_capacity(clients / 2);
    let mut held = Vec::with_capacity(clients);
    for pair in pairs {
        let (a, b, join, relay) = pair.await.unwrap();
        joins.extend(join);
        relays.push(relay);
        held.push(a);
        held.push(b);
    }
    let join_wall = started.elapsed();

    // Hold everyone (answering pings) while the server settles, then measure.
    let readers: Vec<_> = held
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_full = rss_kib(pid);
    let cpu = cpu_seconds(pid);

    report("connect", connect);
    report("join", joins);
    report("relay", relays);
    println!(
        "connect all: {:.2} s; join all: {:.2} s; server CPU {:.2} s",
        connect_wall.as_secs_f64(),
        join_wall.as_secs_f64(),
        cpu
    );
    println!(
        "server RSS: idle {} KiB, with {clients} clients {} KiB => {:.1} KiB per connection",
        rss_idle,
        rss_full,
        (rss_full.saturating_sub(rss_idle)) as f64 / clients as f64
    );
    for r in readers {
        r.abort();
    }
}
