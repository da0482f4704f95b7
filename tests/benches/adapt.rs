//! The side-by-side adaptation benchmark (a program, not a test): for each link profile a Confab
//! pair and then a Chromium pair (the web client in Debian's headless Chromium) call each other
//! across the same `NetLab` topology, and a table compares what each delivered. Needs root.
//!
//!     CONFAB_ADAPT_SECS=20 CONFAB_ADAPT_PROFILES=good,3g cargo bench -p confab-e2e --bench adapt
//!
//! `CONFAB_ADAPT_SECS` is the call length of the steady profiles (default 20; the drop profile
//! always runs 10 s + its 15 s dip + 17 s); `CONFAB_ADAPT_PROFILES` picks profiles by name
//! (default: good, constrained, wifi-lossy, drop, very-bad, 3g).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confab_e2e::browser::{page_url, write_pattern_y4m, Browser, BrowserOutcome};
use confab_e2e::netem::{NetLab, Profile, Scenario};
use confab_e2e::timeline::{mean, window};
use confab_e2e::{num, room_code, test_media, Peer};
use serde_json::Value;

/// When the drop profile's link falls to 500 kbit/s, after the scenario starts.
const DIP_AT_S: f64 = 10.0;
/// How long the drop profile's calls last (the dip, and 15 s to come back and some).
const DROP_CALL_S: u32 = 42;

/// One direction of a call, on the scenario's clock (seconds since its first step).
struct Direction {
    /// (t, video kbit/s the sender sent in that second).
    sent: Vec<(f64, f64)>,
    /// (t, frames the receiver decoded in that second, its freezes so far).
    received: Vec<(f64, f64, f64)>,
    /// (t, height of the picture received in that second).
    heights: Vec<(f64, f64)>,
    /// Share of the receiver's audio that was concealed over the call.
    concealed: f64,
    /// Glass-to-glass latency p50 / p95 from the stamps (Confab's receiver only).
    latency_ms: Option<(f64, f64)>,
}

/// What one direction delivered.
#[derive(Clone, Copy, Default)]
struct Measured {
    sent_kbps: f64,
    fps: f64,
    freezes: f64,
    concealed_pct: f64,
    /// Height of the received picture, mean over the last 10 s.
    height: f64,
    latency_ms: Option<(f64, f64)>,
    /// Drop profile only: seconds from the dip until the sender is under 500 kbit/s, from the
    /// link's return until it is above 1.5 Mbit/s (`None`: never, within the call), and the
    /// frame rate received during the dip.
    down_s: Option<f64>,
    up_s: Option<f64>,
    dip_fps: f64,
}

fn measure(d: &Direction, is_drop: bool) -> Measured {
    let end_sent = d.sent.last().map_or(0.0, |s| s.0);
    let end_recv = d.received.last().map_or(0.0, |s| s.0);
    let last_sent: Vec<f64> = d
        .sent
        .iter()
        .filter(|s| s.0 > end_sent - 10.0)
        .map(|s| s.1)
        .collect();
    let last_fps: Vec<f64> = d
        .received
        .iter()
        .filter(|s| s.0 > end_recv - 10.0)
        .map(|s| s.1)
        .collect();
    let freezes = d.received.last().map_or(0.0, |s| s.2);
    let last_heights: Vec<f64> = d
        .heights
        .iter()
        .filter(|s| s.0 > end_recv - 10.0 && s.1 > 0.0)
        .map(|s| s.1)
        .collect();
    let mut m = Measured {
        sent_kbps: mean(&last_sent),
        fps: mean(&last_fps),
        freezes,
        concealed_pct: d.concealed * 100.0,
        height: mean(&last_heights),
        latency_ms: d.latency_ms,
        ..Measured::default()
    };
    if is_drop {
        let back_at = DIP_AT_S + Scenario::DROP_LENGTH.as_secs_f64();
        m.down_s = d
            .sent
            .iter()
            .find(|s| s.0 > DIP_AT_S + 1.0 && s.1 <= 500.0)
            .map(|s| s.0 - DIP_AT_S);
        m.up_s = d
            .sent
            .iter()
            .find(|s| s.0 > back_at && s.1 >= 1500.0)
            .map(|s| s.0 - back_at);
        let dip: Vec<f64> = d
            .received
            .iter()
            .filter(|s| s.0 > DIP_AT_S + 1.0 && s.0 <= back_at)
            .map(|s| s.1)
            .collect();
        m.dip_fps = mean(&dip);
    }
    m
}

/// The mean of both directions (a `None` time in either stays `None`).
fn both(a: Measured, b: Measured) -> Measured {
    let avg = |x: f64, y: f64| (x + y) / 2.0;
    let avg_t = |x: Option<f64>, y: Option<f64>| Some(avg(x?, y?));
    Measured {
        sent_kbps: avg(a.sent_kbps, b.sent_kbps),
        fps: avg(a.fps, b.fps),
        freezes: avg(a.freezes, b.freezes),
        concealed_pct: avg(a.concealed_pct, b.concealed_pct),
        height: avg(a.height, b.height),
        latency_ms: a
            .latency_ms
            .zip(b.latency_ms)
            .map(|(x, y)| (avg(x.0, y.0), avg(x.1, y.1))),
        down_s: avg_t(a.down_s, b.down_s),
        up_s: avg_t(a.up_s, b.up_s),
        dip_fps: avg(a.dip_fps, b.dip_fps),
    }
}

fn epoch_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Confab's per-second timeline of `stats`, shifted by `offset` onto the scenario's clock.
fn confab_directions(sa: &Value, sb: &Value, offsets: (f64, f64)) -> [Direction; 2] {
    let tl = |s: &Value| -> Vec<Value> { s["timeline"].as_array().cloned().unwrap_or_default() };
    let direction = |sender: &Value, so: f64, receiver: &Value, ro: f64| Direction {
        sent: window(&tl(sender), 0.0, f64::MAX)
            .iter()
            .map(|s| (num(s, "/t_s") + so, num(s, "/send_kbps")))
            .collect(),
        received: window(&tl(receiver), 0.0, f64::MAX)
            .iter()
            .map(|s| (num(s, "/t_s") + ro, num(s, "/recv_fps"), num(s, "/freezes")))
            .collect(),
        heights: window(&tl(receiver), 0.0, f64::MAX)
            .iter()
            .map(|s| (num(s, "/t_s") + ro, num(s, "/recv_height")))
            .collect(),
        concealed: num(receiver, "/audio_recv/concealed_ratio"),
        latency_ms: Some((
            num(receiver, "/video_recv/latency_ms/p50"),
            num(receiver, "/video_recv/latency_ms/p95"),
        )),
    };
    [
        direction(sa, offsets.0, sb, offsets.1),
        direction(sb, offsets.1, sa, offsets.0),
    ]
}

fn browser_directions(a: &BrowserOutcome, b: &BrowserOutcome, start_epoch: f64) -> [Direction; 2] {
    // The last sample is the second in which the other side left: left out.
    let samples = |o: &BrowserOutcome| -> Vec<Value> {
        let tl = o.timeline();
        tl[..tl.len().saturating_sub(1)].to_vec()
    };
    let t = |s: &Value| s["epoch_ms"].as_f64().unwrap_or(0.0) / 1000.0 - start_epoch;
    let f = |s: &Value, k: &str| s[k].as_f64().unwrap_or(0.0);
    let concealed = |o: &BrowserOutcome| {
        o.timeline().last().map_or(0.0, |s| {
            f(s, "audio_concealed_total") / f(s, "audio_samples_total").max(1.0)
        })
    };
    let direction = |sender: &BrowserOutcome, receiver: &BrowserOutcome| Direction {
        sent: samples(sender)
            .iter()
            .map(|s| (t(s), f(s, "send_kbps")))
            .collect(),
        received: samples(receiver)
            .iter()
            .map(|s| (t(s), f(s, "recv_fps"), f(s, "freezes")))
            .collect(),
        heights: samples(receiver)
            .iter()
            .map(|s| (t(s), f(s, "recv_height")))
            .collect(),
        concealed: concealed(receiver),
        // Chromium's frames carry no capture stamp it could read.
        latency_ms: None,
    };
    [direction(a, b), direction(b, a)]
}

fn scenario_for(name: &str) -> Option<Scenario> {
    let steady = |p: Profile| Some(Scenario::steady(p));
    match name {
        "good" => steady(Profile::GOOD),
        "home" => steady(Profile::HOME),
        "constrained" => steady(Profile::CONSTRAINED),
        "wifi-lossy" => steady(Profile::WIFI_LOSSY),
        "very-bad" => steady(Profile::VERY_BAD),
        "3g" => steady(Profile::THREE_G),
        "drop" => Some(Scenario::drop(Duration::from_secs_f64(DIP_AT_S))),
        _ => None,
    }
}

/// A Confab pair through a fresh lab playing `scenario`.
fn run_confab(scenario: &Scenario, secs: u32, room: u64) -> Option<[Direction; 2]> {
    let mut lab = NetLab::new(scenario.steps[0].profile);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = lab.start_signaling(&[]);
    let room = room_code(room);
    let duration = secs.to_string();
    let args = test_media("1280x720", &["--duration", &duration, "--wait", "30"]);
    let started = Instant::now();
    let _player = lab.play(scenario);
    let a = Peer::start_in(lab.alice(), dir.path(), "alice", &server.url, &room, &args);
    let a_at = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start_in(lab.bob(), dir.path(), "bob", &server.url, &room, &args);
    let b_at = started.elapsed().as_secs_f64();
    let timeout = Duration::from_secs(u64::from(secs) + 60);
    let (oa, ob) = (a.finish(timeout), b.finish(timeout));
    match (oa.stats, ob.stats) {
        (Some(sa), Some(sb)) if oa.status.success() && ob.status.success() => {
            Some(confab_directions(&sa, &sb, (a_at, b_at)))
        }
        _ => {
            eprintln!(
                "confab on {}: a side failed\n{}\n{}",
                scenario.name, oa.stderr, ob.stderr
            );
            None
        }
    }
}

/// A Chromium pair through a fresh lab playing `scenario`, sending the pattern from `y4m`.
fn run_chromium(scenario: &Scenario, secs: u32, room: u64, y4m: &str) -> Option<[Direction; 2]> {
    let mut lab = NetLab::new(scenario.steps[0].profile);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = lab.start_signaling(&[]);
    let room = room_code(room);
    let hold = secs.to_string();
    let args = [
        "--frames",
        "1",
        "--timeout",
        "40",
        "--hold",
        &hold,
        "--fake-video",
        y4m,
    ];
    let start_epoch = epoch_s();
    let _player = lab.play(scenario);
    let url = |name| page_url(&server.url, &room, name);
    let a = Browser::start(Some(lab.alice()), dir.path(), "alice", &url("Alice"), &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Browser::start(Some(lab.bob()), dir.path(), "bob", &url("Bob"), &args);
    let timeout = Duration::from_secs(u64::from(secs) + 60);
    let (oa, ob) = (a.finish(timeout), b.finish(timeout));
    if !oa.ok || !ob.ok {
        eprintln!(
            "chromium on {}: a side failed: {} / {}",
            scenario.name, oa.json["reason"], ob.json["reason"]
        );
        return None;
    }
    Some(browser_directions(&oa, &ob, start_epoch))
}

fn cell(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

fn ratio(confab: f64, chromium: f64) -> String {
    if chromium.abs() < 1e-9 {
        "-".into()
    } else {
        format!("{:.2}", confab / chromium)
    }
}

fn main() {
    let secs: u32 = std::env::var("CONFAB_ADAPT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let names = std::env::var("CONFAB_ADAPT_PROFILES")
        .unwrap_or_else(|_| "good,constrained,wifi-lossy,drop,very-bad,3g".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let y4m = dir.path().join("pattern-720p.y4m");
    write_pattern_y4m(&y4m, 1280, 720, 60);
    let y4m = y4m
        .to_str()
        .expect("invariant: a temp path is UTF-8")
        .to_owned();
    let mut rows = Vec::new();
    for (i, name) in names.split(',').map(str::trim).enumerate() {
        let Some(scenario) = scenario_for(name) else {
            eprintln!("unknown profile {name:?}: skipped");
            continue;
        };
        let is_drop = name == "drop";
        let call_secs = if is_drop { DROP_CALL_S } else { secs };
        let room = 7000 + i as u64 * 2;
        eprintln!("{name}: confab pair, {call_secs} s");
        let confab = run_confab(&scenario, call_secs, room);
        eprintln!("{name}: chromium pair, {call_secs} s");
        let chromium = run_chromium(&scenario, call_secs, room + 1, &y4m);
        let summarize = |who: &str, d: Option<[Direction; 2]>| {
            d.map(|[ab, ba]| {
                let (x, y) = (measure(&ab, is_drop), measure(&ba, is_drop));
                eprintln!(
                    "  {who}: a->b {:.0} kbit/s {:.1} fps {} freezes {:.1}% | b->a {:.0} kbit/s {:.1} fps {} freezes {:.1}%",
                    x.sent_kbps, x.fps, x.freezes, x.concealed_pct,
                    y.sent_kbps, y.fps, y.freezes, y.concealed_pct
                );
                both(x, y)
            })
        };
        rows.push((
            name.to_owned(),
            summarize("confab", confab),
            summarize("chromium", chromium),
        ));
    }
    println!(
        "\nEach cell: mean of both directions. kbit/s: video sent, last 10 s; fps: received, last \
         10 s; height: received picture, last 10 s; latency: glass to glass from the stamps \
         (Confab only), p50/p95 ms; freezes: over the call; concealed: audio, over the call; \
         drop: s to < 500 kbit/s \
         after the dip / s to > 1.5 Mbit/s after the link is back, fps during the dip. Steady calls \
         {secs} s, drop {DROP_CALL_S} s.\n"
    );
    println!(
        "| profile | kbit/s Confab | Chromium | ratio | fps Confab | Chromium | ratio | height Confab | Chromium | latency Confab | freezes Confab | Chromium | concealed % Confab | Chromium | drop down/up s, dip fps Confab | Chromium |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, confab, chromium) in rows {
        let c = confab.unwrap_or_default();
        let b = chromium.unwrap_or_default();
        let failed = |m: &Option<Measured>| if m.is_none() { " (failed)" } else { "" };
        let drop_cell = |m: &Measured| {
            if name == "drop" {
                format!("{} / {}, {:.1}", cell(m.down_s), cell(m.up_s), m.dip_fps)
            } else {
                "".into()
            }
        };
        println!(
            "| {name}{}{} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            failed(&confab),
            failed(&chromium),
            c.sent_kbps,
            b.sent_kbps,
            ratio(c.sent_kbps, b.sent_kbps),
            c.fps,
            b.fps,
            ratio(c.fps, b.fps),
            c.height,
            b.height,
            c.latency_ms
                .map_or_else(|| "-".into(), |(p50, p95)| format!("{p50:.0} / {p95:.0}")),
            c.freezes,
            b.freezes,
            c.concealed_pct,
            b.concealed_pct,
            drop_cell(&c),
            drop_cell(&b),
        );
    }
}
