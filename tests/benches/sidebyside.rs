//! The cost benchmark against Chromium (a program, not a test): on loopback, rounds of a Confab
//! pair (`confab join --headless`) and a Chromium pair (the web page in Debian's headless Chromium,
//! H.264), both sending the same 720p30 .y4m and .wav, and per peer what each costs: cores and PSS
//! of its whole process tree over a steady window, time to the first remote frame, encode and
//! decode ms per frame, and audio mouth to ear (by the sender reports) and jitter-buffer wait.
//! Prints each round, then medians with Confab/Chromium ratios and the goals,
//! and the cores ratio round by round (the steadier reading when the machine's speed drifts).
//!
//!     cargo bench -p confab-e2e --bench sidebyside -- [ROUNDS] [WINDOW_S] [SETTLE_S] [WxH]
//!
//! Defaults: 3 rounds, a 20 s window starting 25 s after the peers were started (by then
//! Chromium's bandwidth estimate on loopback has ramped up and it sends 720p, as Confab does;
//! at 8 s it still sends ~360p). WxH (default 1280x720, the size the goals are for) sets the
//! video's size: a small one leaves the machine's CPU free, to compare the audio paths of two
//! peers that are not short of it. With `--pulse` every peer plays into a null sink of its own
//! on a PulseAudio the bench starts (Confab through its default speaker, Chromium through its
//! PulseAudio output), so mouth to ear includes a real output device's buffering on both sides.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confab_e2e::browser::{page_url, write_pattern_y4m, write_signal_wav, Browser, BrowserOutcome};
use confab_e2e::services::Pulse;
use confab_e2e::{num, room_code, Peer, Server};
use serde_json::Value;

/// Opus's encoder lookahead at 48 kHz (312 samples), ms.
const OPUS_LOOKAHEAD_MS: f64 = 6.5;
/// Clock ticks per second of /proc/PID/stat (`USER_HZ`, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;
/// Goals for Confab/Chromium (issue 13): cores per peer, memory, time to the first frame.
const GOAL_CORES: f64 = 0.45;
const GOAL_MEMORY: f64 = 0.15;
const GOAL_FIRST_FRAME: f64 = 0.4;

/// What one peer cost, and what it sent (to see that both sides did the same work).
#[derive(Clone, Copy, Default)]
struct Cost {
    cores: f64,
    pss_mib: f64,
    /// The call's first offer (the offerer's createOffer, in wall-clock time) -> this peer's
    /// first remote frame shown.
    first_frame_ms: Option<f64>,
    /// From the start of joining -> first frame. Confab: `join` (so the peer that joined first
    /// includes waiting for the other); Chromium: the page's signaling start (its own
    /// `timing.first_frame`).
    start_first_frame_ms: Option<f64>,
    encode_ms: Option<f64>,
    decode_ms: Option<f64>,
    send_fps: f64,
    send_height: f64,
    send_kbps: f64,
    /// Mouth to ear of the audio by the sender reports, p50, Opus's lookahead included.
    /// Confab: `audio_recv.latency_estimated_ms` over the call; Chromium: its inbound audio's
    /// `estimatedPlayoutTimestamp` against the wall clock, sampled once a second in the window,
    /// plus the same 6.5 ms lookahead (its encoder has it too, and the stat leaves it out).
    audio_ms: Option<f64>,
    /// How long the audio played had waited in the jitter buffer, p50. Confab:
    /// `audio_recv.waited_ms` over the call; Chromium: NetEq's `jitterBufferDelay` per sample
    /// emitted, per second in the window.
    audio_jitter_ms: Option<f64>,
}

/// Every live process's parent pid, from /proc.
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse().ok()) {
            map.insert(pid, ppid);
        }
    }
    map
}

/// The fields of /proc/PID/stat after the command name (field 3, the state, is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// `root` (when `with_root`) and all its live descendants.
fn tree(root: u32, with_root: bool) -> Vec<u32> {
    let parents = parents();
    let mut pids = vec![root];
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        pids.extend(
            parents
                .iter()
                .filter(|(_, &pp)| pp == parent)
                .map(|(&p, _)| p),
        );
        i += 1;
    }
    if !with_root {
        pids.remove(0);
    }
    pids
}

/// CPU ticks used by a process tree: user + system of each process, and of its reaped children
/// (so a helper that exited inside the window still counts).
fn tree_ticks(root: u32, with_root: bool) -> u64 {
    tree(root, with_root)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            f.get(11..15)
                .map_or(0, |t| t.iter().filter_map(|x| x.parse::<u64>().ok()).sum())
        })
        .sum()
}

/// Proportional set size of a process tree in MiB (shared pages split among their users).
fn tree_pss_mib(root: u32, with_root: bool) -> f64 {
    let kib: u64 = tree(root, with_root)
        .into_iter()
        .filter_map(|pid| {
            let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
            rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum();
    kib as f64 / 1024.0
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The steady window: from `started + settle` for `window`. Returns per tree (cores, PSS MiB at
/// the window's end) and the window's wall-clock bounds in epoch ms.
fn measure(
    trees: [(u32, bool); 2],
    started: Instant,
    settle: Duration,
    window: Duration,
) -> ([(f64, f64); 2], (f64, f64)) {
    std::thread::sleep((started + settle).saturating_duration_since(Instant::now()));
    let (t0, e0) = (Instant::now(), epoch_ms());
    let before = trees.map(|(pid, root)| tree_ticks(pid, root));
    std::thread::sleep(window);
    let after = trees.map(|(pid, root)| tree_ticks(pid, root));
    let secs = t0.elapsed().as_secs_f64();
    let pss = trees.map(|(pid, root)| tree_pss_mib(pid, root));
    let e1 = epoch_ms();
    let cores = |i: usize| after[i].saturating_sub(before[i]) as f64 / TICKS_PER_S / secs;
    ([(cores(0), pss[0]), (cores(1), pss[1])], (e0, e1))
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Settings shared by both kinds of pair.
struct Setup {
    /// The video's size, as `--video-size` takes it, and its height.
    size: String,
    height: f64,
    settle: Duration,
    window: Duration,
    y4m: String,
    wav: String,
    /// The audio server whose sinks the peers play into (`--pulse`); none: no device.
    pulse: Option<Pulse>,
}

impl Setup {
    /// The environment of a peer that plays into `sink` (nothing without `--pulse`).
    fn speaker_env(&self, sink: &str) -> Vec<(String, String)> {
        self.pulse
            .as_ref()
            .map_or_else(Vec::new, |p| p.env(Some(sink), None))
    }
}

impl Setup {
    /// Seconds a peer stays in the call: past the window's end, with room to spare.
    fn call_secs(&self) -> String {
        (self.settle + self.window + Duration::from_secs(3))
            .as_secs()
            .to_string()
    }
}

fn run_confab(setup: &Setup, room: u64) -> Option<[Cost; 2]> {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&[]);
    let room = room_code(room);
    let camera = format!("file:{}", setup.y4m);
    let mic = format!("file:{}", setup.wav);
    let duration = setup.call_secs();
    let mut args = vec![
        "--camera",
        &camera,
        "--mic",
        &mic,
        "--video-size",
        &setup.size,
        "--fps",
        "30",
        "--duration",
        &duration,
        "--wait",
        "30",
    ];
    if setup.pulse.is_none() {
        args.extend(["--speaker", "null"]);
    }
    let started = Instant::now();
    let peer = |name: &str| {
        let env = setup.speaker_env(&format!("confab_{name}"));
        Peer::start_with_env(dir.path(), name, &server.url, &room, &args, &env)
    };
    let a = peer("a");
    std::thread::sleep(Duration::from_millis(300));
    let b = peer("b");
    let trees = [(a.proc.pid(), true), (b.proc.pid(), true)];
    let (usage, _) = measure(trees, started, setup.settle, setup.window);
    let timeout = Duration::from_secs(60);
    let outcomes = [a.finish(timeout), b.finish(timeout)];
    let (from, to) = (
        setup.settle.as_secs_f64(),
        (setup.settle + setup.window).as_secs_f64(),
    );
    // The call's first offer in wall-clock ms: the offerer's, the earlier of the two marks (the
    // other peer's is when the offer reached it).
    let epoch = |s: &Value, k: &str| Some(num(s, "/joined_epoch_ms") + s.pointer(k)?.as_f64()?);
    let offer = outcomes
        .iter()
        .filter_map(|o| epoch(o.stats.as_ref()?, "/ms_to/offer"))
        .reduce(f64::min);
    let mut costs = [Cost::default(); 2];
    for (i, outcome) in outcomes.iter().enumerate() {
        let Some(s) = outcome.stats.as_ref().filter(|_| outcome.status.success()) else {
            eprintln!(
                "confab peer {i} failed ({}): {}",
                outcome.status, outcome.stderr
            );
            return None;
        };
        let timeline = s["timeline"].as_array().cloned().unwrap_or_default();
        let in_window: Vec<&Value> = timeline
            .iter()
            .filter(|x| (from..=to).contains(&x["t_s"].as_f64().unwrap_or(-1.0)))
            .collect();
        let field =
            |k: &str| -> Vec<f64> { in_window.iter().filter_map(|x| x[k].as_f64()).collect() };
        costs[i] = Cost {
            cores: usage[i].0,
            pss_mib: usage[i].1,
            first_frame_ms: offer
                .zip(epoch(s, "/ms_to/first_video_frame"))
                .map(|(offer, frame)| frame - offer),
            start_first_frame_ms: s
                .pointer("/ms_to/first_video_frame")
                .and_then(Value::as_f64),
            encode_ms: Some(num(s, "/video_send/encode_ms/mean")),
            decode_ms: Some(num(s, "/video_recv/decode_ms/mean")),
            send_fps: mean(&field("send_fps")),
            send_height: mean(&field("send_height")),
            send_kbps: mean(&field("send_kbps")),
            audio_ms: s
                .pointer("/audio_recv/latency_estimated_ms/p50")
                .and_then(Value::as_f64),
            audio_jitter_ms: s
                .pointer("/audio_recv/waited_ms/p50")
                .and_then(Value::as_f64),
        };
    }
    eprintln!(
        "  confab first frame per peer (a started first, b 300 ms later): {} / {} ms",
        cell(costs[0].first_frame_ms, 0),
        cell(costs[1].first_frame_ms, 0)
    );
    Some(costs)
}

fn run_chromium(setup: &Setup, room: u64) -> Option<[Cost; 2]> {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&[]);
    let room = room_code(room);
    let hold = setup.call_secs();
    let args = [
        "--frames",
        "1",
        "--timeout",
        "40",
        "--hold",
        &hold,
        "--fake-video",
        &setup.y4m,
        "--fake-audio",
        &setup.wav,
    ];
    let url = |name: &str| page_url(&server.url, &room, name);
    let started = Instant::now();
    let browser = |name: &str, shown: &str| {
        let env = setup.speaker_env(&format!("chromium_{name}"));
        Browser::start_with_env(None, dir.path(), name, &url(shown), &args, &env)
    };
    let a = browser("alice", "Alice");
    std::thread::sleep(Duration::from_millis(300));
    let b = browser("bob", "Bob");
    // The tree under node: Chromium's processes, not the node script that drives it.
    let trees = [(a.pid(), false), (b.pid(), false)];
    let (usage, (e0, e1)) = measure(trees, started, setup.settle, setup.window);
    let timeout = Duration::from_secs(60);
    let outcomes = [a.finish(timeout), b.finish(timeout)];
    if let Some(o) = outcomes.iter().find(|o| !o.ok) {
        eprintln!("chromium failed: {}\n{}", o.json["reason"], o.stderr);
        return None;
    }
    for o in &outcomes {
        if o.json["codec"].as_str() != Some("video/H264") {
            eprintln!("warning: chromium received {} (not H.264)", o.json["codec"]);
        }
    }
    let mark = |o: &BrowserOutcome, k: &str| o.json["marks"][k].as_f64();
    // The offerer's createOffer; both browsers share the machine's wall clock.
    let offer = outcomes
        .iter()
        .filter_map(|o| mark(o, "offer_epoch_ms"))
        .reduce(f64::min);
    let mut costs = [Cost::default(); 2];
    for (i, o) in outcomes.iter().enumerate() {
        let timeline = o.timeline();
        let in_window: Vec<&Value> = timeline
            .iter()
            .filter(|x| (e0..=e1).contains(&x["epoch_ms"].as_f64().unwrap_or(0.0)))
            .collect();
        let field =
            |k: &str| -> Vec<f64> { in_window.iter().filter_map(|x| x[k].as_f64()).collect() };
        let limits: Vec<&str> = in_window
            .iter()
            .filter_map(|x| x["quality_limitation"].as_str())
            .collect();
        eprintln!("  chromium peer {i}: quality limitation per second in the window: {limits:?}");
        let last = timeline.last().cloned().unwrap_or(Value::Null);
        let per_frame = |total: &str, frames: &str| {
            let n = last[frames].as_f64().unwrap_or(0.0);
            (n > 0.0).then(|| last[total].as_f64().unwrap_or(0.0) * 1000.0 / n)
        };
        costs[i] = Cost {
            cores: usage[i].0,
            pss_mib: usage[i].1,
            first_frame_ms: offer
                .zip(mark(o, "first_frame_epoch_ms"))
                .map(|(offer, frame)| frame - offer),
            start_first_frame_ms: o.json["timing"]["first_frame"].as_f64(),
            encode_ms: per_frame("total_encode_s", "frames_encoded_total"),
            decode_ms: per_frame("total_decode_s", "frames_decoded_total"),
            send_fps: mean(&field("send_fps")),
            send_height: mean(&field("send_height")),
            send_kbps: mean(&field("send_kbps")),
            audio_ms: median(field("audio_mouth_to_ear_ms")).map(|ms| ms + OPUS_LOOKAHEAD_MS),
            audio_jitter_ms: median(field("audio_jitter_buffer_ms")),
        };
    }
    eprintln!(
        "  chromium first frame per peer (a started first, b 300 ms later): {} / {} ms",
        cell(costs[0].first_frame_ms, 0),
        cell(costs[1].first_frame_ms, 0)
    );
    Some(costs)
}

/// The mean of the two peers of a round.
fn per_peer(costs: &[Cost; 2]) -> Cost {
    let avg = |f: fn(&Cost) -> f64| (f(&costs[0]) + f(&costs[1])) / 2.0;
    let avg_opt = |f: fn(&Cost) -> Option<f64>| Some((f(&costs[0])? + f(&costs[1])?) / 2.0);
    Cost {
        cores: avg(|c| c.cores),
        pss_mib: avg(|c| c.pss_mib),
        first_frame_ms: avg_opt(|c| c.first_frame_ms),
        start_first_frame_ms: avg_opt(|c| c.start_first_frame_ms),
        encode_ms: avg_opt(|c| c.encode_ms),
        decode_ms: avg_opt(|c| c.decode_ms),
        send_fps: avg(|c| c.send_fps),
        send_height: avg(|c| c.send_height),
        send_kbps: avg(|c| c.send_kbps),
        audio_ms: avg_opt(|c| c.audio_ms),
        audio_jitter_ms: avg_opt(|c| c.audio_jitter_ms),
    }
}

/// A line of the table: its name, the number it shows, decimals, the goal for the ratio.
type Row = (&'static str, fn(&Cost) -> Option<f64>, usize, Option<f64>);

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    Some(if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    })
}

fn cell(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

fn show(who: &str, round: usize, c: &Cost) {
    eprintln!(
        "round {round} {who}: {:.2} cores/peer, PSS {:.0} MiB/peer, first frame {} ms after the offer \
         ({} ms after starting to join), encode {} ms, \
         decode {} ms per frame, sending {:.1} fps at {:.0}p, {:.0} kbit/s; audio mouth to ear \
         {} ms, {} ms of it in the jitter buffer",
        c.cores,
        c.pss_mib,
        cell(c.first_frame_ms, 0),
        cell(c.start_first_frame_ms, 0),
        cell(c.encode_ms, 2),
        cell(c.decode_ms, 2),
        c.send_fps,
        c.send_height,
        c.send_kbps,
        cell(c.audio_ms, 1),
        cell(c.audio_jitter_ms, 1),
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize, default: u64| {
        args.get(i)
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let rounds = arg(0, 3) as usize;
    let window_s = arg(1, 20);
    let settle_s = arg(2, 25);
    let size = args.get(3).map_or("1280x720", String::as_str);
    let Some((width, height)) = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| w >= 16 && h >= 16 && w % 2 == 0 && h % 2 == 0)
    else {
        eprintln!("the video size must be WxH, even and at least 16x16, like 1280x720: {size}");
        std::process::exit(2);
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (y4m, wav) = (
        dir.path().join(format!("pattern-{size}.y4m")),
        dir.path().join("signal-48k.wav"),
    );
    write_pattern_y4m(&y4m, width, height, 60);
    write_signal_wav(&wav);
    let text = |p: &Path| {
        p.to_str()
            .expect("invariant: a temp path is UTF-8")
            .to_owned()
    };
    let pulse = std::env::args()
        .any(|a| a == "--pulse")
        .then(|| Pulse::start(&["confab_a", "confab_b", "chromium_alice", "chromium_bob"]));
    let setup = Setup {
        pulse,
        size: size.to_owned(),
        height: height as f64,
        settle: Duration::from_secs(settle_s),
        window: Duration::from_secs(window_s),
        y4m: text(&y4m),
        wav: text(&wav),
    };
    let mut confab = Vec::new();
    let mut chromium = Vec::new();
    // Confab's cores over Chromium's, for each round where both pairs ran.
    let mut paired = Vec::new();
    for round in 1..=rounds {
        let salt = 7700 + round as u64 * 2;
        eprintln!("round {round}: confab pair");
        let ours = run_confab(&setup, salt).map(|c| per_peer(&c));
        if let Some(c) = &ours {
            show("confab", round, c);
            confab.push(*c);
        }
        eprintln!("round {round}: chromium pair");
        let theirs = run_chromium(&setup, salt + 1).map(|c| per_peer(&c));
        if let Some(c) = &theirs {
            show("chromium", round, c);
            chromium.push(*c);
        }
        if let (Some(c), Some(b)) = (&ours, &theirs) {
            if b.cores > 0.0 {
                paired.push(c.cores / b.cores);
            }
        }
    }
    let med =
        |runs: &[Cost], f: fn(&Cost) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    println!(
        "\nSide by side on loopback, {size}@30 from the same .y4m and .wav, H.264; medians of \
         {} Confab and {} Chromium rounds (each the mean of its two peers); cores and PSS over a \
         {window_s} s window from {settle_s} s after start, whole process trees (Chromium: every \
         process under its node driver); audio played into {}.\n",
        confab.len(),
        chromium.len(),
        if setup.pulse.is_some() {
            "a PulseAudio null sink per peer"
        } else {
            "no device"
        }
    );
    println!("| per peer | Confab | Chromium | Confab/Chromium | goal |");
    println!("|---|---|---|---|---|");
    let rows: [Row; 12] = [
        ("cores", |c| Some(c.cores), 2, Some(GOAL_CORES)),
        ("PSS MiB", |c| Some(c.pss_mib), 0, Some(GOAL_MEMORY)),
        (
            "first frame ms after the offer",
            |c| c.first_frame_ms,
            0,
            Some(GOAL_FIRST_FRAME),
        ),
        (
            "first frame ms after starting to join (Confab: join; Chromium: page signaling)",
            |c| c.start_first_frame_ms,
            0,
            None,
        ),
        ("encode ms/frame", |c| c.encode_ms, 2, None),
        ("decode ms/frame", |c| c.decode_ms, 2, None),
        (
            "core-ms per frame sent",
            |c| (c.send_fps > 0.0).then(|| c.cores * 1000.0 / c.send_fps),
            1,
            None,
        ),
        ("sent fps", |c| Some(c.send_fps), 1, None),
        ("sent height", |c| Some(c.send_height), 0, None),
        ("sent video kbit/s", |c| Some(c.send_kbps), 0, None),
        (
            "audio mouth to ear ms by sender reports, p50",
            |c| c.audio_ms,
            1,
            None,
        ),
        (
            "audio ms waited in the jitter buffer, p50",
            |c| c.audio_jitter_ms,
            1,
            None,
        ),
    ];
    // The goals are for a 720p call.
    let judged = size == "1280x720";
    for (name, f, digits, goal) in rows {
        let goal = goal.filter(|_| judged);
        let (c, b) = (med(&confab, f), med(&chromium, f));
        let ratio = c.zip(b).filter(|(_, b)| *b > 0.0).map(|(c, b)| c / b);
        let verdict = match (ratio, goal) {
            // Two medians from different rounds: the goal is judged round by round (below).
            (Some(_), Some(g)) if name == "cores" && !paired.is_empty() => {
                format!("<= {g}: judged round by round, below")
            }
            (Some(r), Some(g)) => format!("<= {g} {}", if r <= g { "met" } else { "NOT met" }),
            (None, Some(g)) => format!("<= {g}"),
            _ => String::new(),
        };
        println!(
            "| {name} | {} | {} | {} | {verdict} |",
            cell(c, digits),
            cell(b, digits),
            // Three decimals where a goal is judged, so "0.45 NOT met" cannot be printed.
            cell(ratio, if goal.is_some() { 3 } else { 2 })
        );
    }
    // The machine's speed drifts between rounds (a slow hour makes both sides' codecs slower),
    // and each side's median can come from a different round. A round's two pairs ran back to
    // back, so the median of the rounds' own ratios is the steadier reading of the goal.
    if let Some(ratio) = median(paired.clone()).filter(|_| judged) {
        let rounds: Vec<String> = paired.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "\nCores, Confab/Chromium round by round (each round's pairs back to back): {}; \
             median {ratio:.3}, goal <= {GOAL_CORES} {}",
            rounds.join(", "),
            if ratio <= GOAL_CORES {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    // A side that cannot keep its frame rate or its 720p (Chromium's CPU adaptation lowers the
    // resolution) ran out of CPU: its cores are the machine's ceiling.
    for (who, runs) in [("Confab", &confab), ("Chromium", &chromium)] {
        let fps = med(runs, |c| Some(c.send_fps)).unwrap_or(0.0);
        let height = med(runs, |c| Some(c.send_height)).unwrap_or(0.0);
        if fps < MIN_VALID_FPS || height < setup.height {
            println!(
                "\nWARNING: {who} sent {fps:.1} fps at {height:.0}p, not 30 at {}p: it ran out of \
                 CPU, so its cores are what the machine had, not what it needed, and the cores \
                 ratio does not judge the goal; compare core-ms per frame sent, or run again on a \
                 quieter machine.",
                setup.height
            );
        }
    }
}

/// Below this median send rate a side is taken to be starved of CPU.
const MIN_VALID_FPS: f64 = 28.0;
