//! Connect-time benchmark (a program, not a test): Confab pairs and Chromium pairs (the web client)
//! on the same NetLab topologies, per path type, and the time back to video (both apps) after a
//! 6 s UDP outage and after an address change. Prints tables; needs root (namespaces).
//!
//!     cargo bench -p confab-e2e --bench connect -- [RUNS] [--recovery]
//!
//! Paths: host (both peers in the public network, talking to each other's own address), srflx
//! (two homes behind cone NATs), relay (two homes behind symmetric NATs, coturn as TURN). Times
//! are the second joiner's, from its welcome into the room (it then gets the offer) to ICE
//! connected and to its first decoded remote video frame; medians over RUNS calls (default 5).

use std::path::Path;
use std::time::{Duration, Instant};

use confab_e2e::browser::{page_url, Browser};
use confab_e2e::netem::{Nat, NetLab, Profile, Side};
use confab_e2e::{room_code, tail, test_media, InNetns, Peer};
use serde_json::Value;

/// coturn's shared secret in the relay lab.
const SECRET: &str = "connect-bench-secret";

#[derive(Clone, Copy, PartialEq, Eq)]
enum PathKind {
    Host,
    Srflx,
    Relay,
}

impl PathKind {
    fn name(self) -> &'static str {
        match self {
            PathKind::Host => "host (same network)",
            PathKind::Srflx => "srflx (cone NAT)",
            PathKind::Relay => "relay (symmetric NAT + TURN)",
        }
    }

    fn lab(self) -> NetLab {
        match self {
            PathKind::Host | PathKind::Srflx => NetLab::with_nat(Nat::Cone, Profile::GOOD),
            PathKind::Relay => {
                let mut lab = NetLab::with_nat(Nat::Symmetric, Profile::GOOD);
                lab.start_turn(SECRET);
                lab
            }
        }
    }

    /// Where the first and the second joiner run.
    fn hosts(self, lab: &NetLab) -> (&dyn InNetns, &dyn InNetns) {
        match self {
            PathKind::Host => (lab.public(), lab.public()),
            PathKind::Srflx | PathKind::Relay => (lab.alice(), lab.bob()),
        }
    }
}

/// One call's numbers (the second joiner's), and the selected pair's candidate types.
struct Connect {
    connected_ms: f64,
    first_frame_ms: f64,
    pair: String,
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.0}"))
}

fn confab_connect(
    kind: PathKind,
    lab: &mut NetLab,
    dir: &Path,
    salt: u64,
) -> Result<Connect, String> {
    let server = lab.start_signaling(&[]);
    let (first, second) = kind.hosts(lab);
    let room = room_code(salt);
    let args = test_media("320x180", &["--duration", "1", "--wait", "20"]);
    let a = Peer::start_in(first, dir, "alice", &server.url, &room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start_in(second, dir, "bob", &server.url, &room, &args);
    let (a, b) = (
        a.finish(Duration::from_secs(40)),
        b.finish(Duration::from_secs(40)),
    );
    if !a.status.success() || !b.status.success() {
        return Err(format!("alice: {}\nbob: {}", a.stderr, b.stderr));
    }
    let stats = b.stats.ok_or("bob wrote no stats")?;
    let at = |field: &str| stats["ms_to"][field].as_f64();
    let (Some(welcome), Some(connected), Some(frame)) = (
        at("signaling"),
        at("ice_connected"),
        at("first_video_frame"),
    ) else {
        return Err(format!("bob's ms_to is incomplete: {}", stats["ms_to"]));
    };
    Ok(Connect {
        connected_ms: connected - welcome,
        first_frame_ms: frame - welcome,
        pair: pair_of(
            &stats["ice"]["local_candidate_type"],
            &stats["ice"]["remote_candidate_type"],
        ),
    })
}

fn pair_of(local: &Value, remote: &Value) -> String {
    format!(
        "{}/{}",
        local.as_str().unwrap_or("?"),
        remote.as_str().unwrap_or("?")
    )
}

fn chromium_connect(
    kind: PathKind,
    lab: &mut NetLab,
    dir: &Path,
    salt: u64,
) -> Result<Connect, String> {
    let server = lab.start_signaling(&[]);
    let (first, second) = kind.hosts(lab);
    let room = room_code(salt);
    // The first stays until the second has its frames (or leaves).
    let a = Browser::start(
        Some(first),
        dir,
        "chromium-a",
        &page_url(&server.url, &room, "A"),
        &["--frames", "10", "--timeout", "30", "--hold", "10"],
    );
    // Chromium takes a moment to start and join.
    std::thread::sleep(Duration::from_secs(3));
    let b = Browser::start(
        Some(second),
        dir,
        "chromium-b",
        &page_url(&server.url, &room, "B"),
        &["--frames", "10", "--timeout", "30"],
    );
    let b = b.finish(Duration::from_secs(60));
    let a = a.finish(Duration::from_secs(30));
    // Only the second joiner is measured (the first may miss its own frame goal when the
    // second leaves as soon as it has its frames).
    if !b.ok {
        return Err(format!("a: {}\nb: {}", a.json, b.json));
    }
    let timing = &b.json["timing"];
    let at = |field: &str| timing[field].as_f64();
    let (Some(welcome), Some(connected), Some(frame)) =
        (at("welcome"), at("connected"), at("first_frame"))
    else {
        return Err(format!(
            "the second browser's timing is incomplete: {timing}"
        ));
    };
    Ok(Connect {
        connected_ms: connected - welcome,
        first_frame_ms: frame - welcome,
        pair: pair_of(&b.json["candidateType"], &b.json["remoteCandidateType"]),
    })
}

/// Medians of `runs` calls made by `call`; prints each failure.
fn measure(
    runs: u64,
    salt: u64,
    mut call: impl FnMut(u64) -> Result<Connect, String>,
) -> (Option<f64>, Option<f64>, String, u64) {
    let (mut connected, mut frames, mut pairs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        match call(salt + i) {
            Ok(c) => {
                connected.push(c.connected_ms);
                frames.push(c.first_frame_ms);
                if !pairs.contains(&c.pair) {
                    pairs.push(c.pair);
                }
            }
            Err(e) => eprintln!("run {i} failed: {e}"),
        }
    }
    let ok = connected.len() as u64;
    (
        median(&mut connected),
        median(&mut frames),
        pairs.join(" "),
        ok,
    )
}

/// Size of a file now (0 when it is not there yet).
fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Waits until `peer` has printed `text`.
fn wait_for(peer: &Peer, text: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !peer.stderr_so_far().contains(text) {
        if Instant::now() > deadline {
            return Err(format!("never said {text:?}: {}", peer.stderr_so_far()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// What a recovery took: until both recordings grew again (a new frame decoded each way).
enum Event {
    UdpOutage,
    AddressChange,
}

impl Event {
    /// Makes it happen in `lab`; returns when it is over (the network restored, or the new
    /// address in place).
    fn happen(&self, lab: &mut NetLab) {
        match self {
            Event::UdpOutage => {
                lab.block_udp(true);
                std::thread::sleep(Duration::from_secs(6));
                lab.block_udp(false);
            }
            Event::AddressChange => {
                let now = lab.bob().addr;
                let next = if now.octets()[3] == 10 { 20 } else { 10 };
                lab.renumber(Side::Bob, std::net::Ipv4Addr::new(192, 168, 2, next));
            }
        }
    }
}

/// One Confab call in a cone lab: `event` happens 3 s into the call (an outage lasts 6 s); the
/// result is the time from its end (restoration, or the new address) until each side decoded
/// a new frame, the later of the two.
fn confab_recovery(lab: &mut NetLab, dir: &Path, event: &Event, salt: u64) -> Result<f64, String> {
    let server = lab.start_signaling(&[]);
    let room = room_code(salt);
    let record = |who: &str| dir.join(format!("{who}-{salt}.y4m"));
    let (rec_a, rec_b) = (record("alice"), record("bob"));
    let peer = |host: &dyn InNetns, who: &str, rec: &Path| {
        let rec = rec
            .to_str()
            .expect("invariant: a temp path is UTF-8")
            .to_owned();
        let args = test_media(
            "320x180",
            &["--duration", "16", "--wait", "20", "--record-video", &rec],
        );
        Peer::start_in(host, dir, who, &server.url, &room, &args)
    };
    let a = peer(lab.alice(), "alice", &rec_a);
    std::thread::sleep(Duration::from_millis(300));
    let b = peer(lab.bob(), "bob", &rec_b);
    wait_for(&a, "confab: connected")?;
    wait_for(&b, "confab: connected")?;
    std::thread::sleep(Duration::from_secs(3));
    event.happen(lab);
    let restored = Instant::now();
    let (base_a, base_b) = (size(&rec_a), size(&rec_b));
    let (mut back_a, mut back_b) = (None, None);
    while back_a.is_none() || back_b.is_none() {
        if restored.elapsed() > Duration::from_secs(10) {
            break;
        }
        if back_a.is_none() && size(&rec_a) > base_a {
            back_a = Some(restored.elapsed());
        }
        if back_b.is_none() && size(&rec_b) > base_b {
            back_b = Some(restored.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (a, b) = (
        a.finish(Duration::from_secs(40)),
        b.finish(Duration::from_secs(40)),
    );
    let _ = (std::fs::remove_file(&rec_a), std::fs::remove_file(&rec_b));
    match (back_a, back_b) {
        (Some(x), Some(y)) => Ok(x.max(y).as_secs_f64() * 1000.0),
        _ => Err(format!(
            "no new frame within 10 s (alice {back_a:?}, bob {back_b:?})\nalice: {}\nbob: {}",
            a.stderr, b.stderr
        )),
    }
}

/// Wall-clock milliseconds now (the pages stamp their frames with the same clock).
fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("invariant: the clock is past 1970")
        .as_secs_f64()
        * 1000.0
}

/// Waits until a browser's page has logged `text`.
fn wait_for_page(browser: &Browser, text: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !browser.stderr_so_far().contains(text) {
        if Instant::now() > deadline {
            let log = browser.stderr_so_far();
            return Err(format!(
                "the page never said {text:?}: {}",
                &log[log.len().saturating_sub(2000)..]
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The same as `confab_recovery` with two Chromiums on the web client: the time from the end of
/// `event` until each page showed a new remote frame (`requestVideoFrameCallback`), the later.
fn chromium_recovery(
    lab: &mut NetLab,
    dir: &Path,
    event: &Event,
    salt: u64,
) -> Result<f64, String> {
    let server = lab.start_signaling(&[]);
    let room = room_code(salt);
    let a = Browser::start(
        Some(lab.alice()),
        dir,
        &format!("chromium-a-{salt}"),
        &page_url(&server.url, &room, "A"),
        &["--frames", "10", "--timeout", "30", "--hold", "60"],
    );
    // Chromium takes a moment to start and join.
    std::thread::sleep(Duration::from_secs(3));
    let b = Browser::start(
        Some(lab.bob()),
        dir,
        &format!("chromium-b-{salt}"),
        &page_url(&server.url, &room, "B"),
        &["--frames", "10", "--timeout", "30", "--hold", "22"],
    );
    let connected = "connection state connected";
    wait_for_page(&a, connected)?;
    wait_for_page(&b, connected)?;
    std::thread::sleep(Duration::from_secs(3));
    event.happen(lab);
    let restored = epoch_ms();
    let b = b.finish(Duration::from_secs(60));
    let a = a.finish(Duration::from_secs(30));
    let back = |who: &str, json: &Value| -> Result<f64, String> {
        json["marks"]["frame_epochs_ms"]
            .as_array()
            .and_then(|frames| {
                frames
                    .iter()
                    .filter_map(Value::as_f64)
                    .find(|&t| t > restored)
            })
            .map(|t| t - restored)
            .filter(|&ms| ms <= 10_000.0)
            .ok_or_else(|| format!("{who}: no new frame within 10 s: {}", json["reason"]))
    };
    let both = back("a", &a.json).and_then(|ta| Ok(ta.max(back("b", &b.json)?)));
    both.map_err(|err| {
        format!(
            "{err}\npage a:\n{}\npage b:\n{}",
            tail(&a.stderr, 3000),
            tail(&b.stderr, 3000)
        )
    })
}

fn main() {
    let runs: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    // `--recovery`: only the recovery part.
    let kinds = if std::env::args().any(|a| a == "--recovery") {
        Vec::new()
    } else {
        vec![PathKind::Host, PathKind::Srflx, PathKind::Relay]
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let salt = 11_000 + 100 * i as u64;
        let mut lab = kind.lab();
        eprintln!("{}: {runs} Confab calls", kind.name());
        let confab = measure(runs, salt, |s| {
            confab_connect(kind, &mut lab, dir.path(), s)
        });
        eprintln!("{}: {runs} Chromium calls", kind.name());
        let chromium = measure(runs, salt + 50, |s| {
            chromium_connect(kind, &mut lab, dir.path(), s)
        });
        rows.push((kind, confab, chromium));
    }
    let mut recoveries = Vec::new();
    for (i, (name, event)) in [
        ("6 s UDP outage, from restoration", Event::UdpOutage),
        ("address change (192.168.2.x)", Event::AddressChange),
    ]
    .into_iter()
    .enumerate()
    {
        let mut lab = NetLab::with_nat(Nat::Cone, Profile::GOOD);
        let mut confab = Vec::new();
        let mut chromium = Vec::new();
        for run in 0..runs {
            let salt = 12_000 + 100 * i as u64 + run;
            eprintln!("{name}: Confab and Chromium, run {run}");
            match confab_recovery(&mut lab, dir.path(), &event, salt) {
                Ok(ms) => confab.push(ms),
                Err(e) => eprintln!("{name}, Confab run {run} failed: {e}"),
            }
            match chromium_recovery(&mut lab, dir.path(), &event, salt + 50) {
                Ok(ms) => chromium.push(ms),
                Err(e) => eprintln!("{name}, Chromium run {run} failed: {e}"),
            }
        }
        recoveries.push((name, summary(confab), summary(chromium)));
    }

    println!("\nConnect times, ms from the second joiner's welcome (median of {runs} runs; ok = calls that connected)");
    println!(
        "| path | Confab: ICE connected | first frame | pair (local/remote) | ok | Chromium: ICE connected | first frame | pair | ok | Confab/Chromium (connected, frame) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (kind, (c_conn, c_frame, c_pair, c_ok), (b_conn, b_frame, b_pair, b_ok)) in &rows {
        let ratio = |c: &Option<f64>, b: &Option<f64>| match (c, b) {
            (Some(c), Some(b)) if *b > 0.0 => format!("{:.2}", c / b),
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {} | {c_pair} | {c_ok}/{runs} | {} | {} | {b_pair} | {b_ok}/{runs} | {}, {} |",
            kind.name(),
            ms(*c_conn),
            ms(*c_frame),
            ms(*b_conn),
            ms(*b_frame),
            ratio(c_conn, b_conn),
            ratio(c_frame, b_frame),
        );
    }
    println!(
        "\nRecovery: ms until a new frame was shown both ways (median of {runs} runs; Confab: its recordings grew, Chromium: requestVideoFrameCallback)"
    );
    println!("| event | Confab median | all | ok | Chromium median | all | ok | Confab/Chromium |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, (c_med, c_all, c_ok), (b_med, b_all, b_ok)) in &recoveries {
        let ratio = match (c_med, b_med) {
            (Some(c), Some(b)) if *b > 0.0 => format!("{:.2}", c / b),
            _ => "-".into(),
        };
        println!(
            "| {name} | {} | {c_all} | {c_ok}/{runs} | {} | {b_all} | {b_ok}/{runs} | {ratio} |",
            ms(*c_med),
            ms(*b_med),
        );
    }
}

/// (median, every value in order, how many) of a list of times.
fn summary(mut times: Vec<f64>) -> (Option<f64>, String, usize) {
    let ok = times.len();
    let med = median(&mut times);
    let all = times
        .iter()
        .map(|t| format!("{t:.0}"))
        .collect::<Vec<_>>()
        .join(" ");
    (med, all, ok)
}
