//! A call from a computer too slow for 720p30 (a program, not a test): two `confab join
//! --headless` peers with the test pattern at 1280x720@30 and the test signal on loopback, peer
//! a's process held to a share of one core by a cgroup CPU quota (in 10 ms periods, so the quota
//! throttles it the way a slow processor would, not in long pauses), peer b free. Prints, per
//! quota and round, what a sends in the call's second half (size, frame rate, why it is limited,
//! its encoder's load), what b gets of it (frame rate, glass-to-glass latency, freezes) and the
//! audio from a (mouth to ear by the sender reports, concealed share); and the other way: what b
//! sends and why, and what a, whose decoder shares the quota, gets of it and asks for.
//!
//!     cargo bench -p confab-e2e --bench slow_computer -- [PERCENT ...] [--secs N] [--rounds N]
//!         [--compare-asks] [--a-size WxH]
//!
//! Defaults: quotas of 30% and 22% of a core, 20 s calls, 2 rounds. `--compare-asks` runs each
//! call twice, alternating which goes first: as is, and with both peers' decoders never asking for
//! less video (`--test-no-video-limit`). `--a-size 320x180` has a send a small picture, so that
//! what holds it back is decoding b's 720p. Needs root and a cgroup `cpu` controller (v2's
//! `cpu.max`, or v1's `cpu.cfs_quota_us`); the bench makes its own group and removes it.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use confab_e2e::{num, room_code, Peer, Server};
use serde_json::Value;

/// A cgroup whose processes get `percent` of one core, in 10 ms periods.
struct Quota {
    dir: PathBuf,
}

impl Quota {
    fn new(percent: u32) -> Result<Self, String> {
        let name = format!("confab-bench-{}", std::process::id());
        let quota_us = percent * 100;
        let v2 = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"));
        let (dir, files) = if v2 {
            // The root must hand the cpu controller to its children.
            let _ = fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu");
            (
                PathBuf::from("/sys/fs/cgroup").join(name),
                vec![("cpu.max", format!("{quota_us} 10000"))],
            )
        } else if PathBuf::from("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() {
            (
                PathBuf::from("/sys/fs/cgroup/cpu").join(name),
                vec![
                    ("cpu.cfs_period_us", "10000".to_string()),
                    ("cpu.cfs_quota_us", quota_us.to_string()),
                ],
            )
        } else {
            return Err("no cgroup cpu controller here (v2 cpu.max or v1 cpu)".into());
        };
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e} (root?)", dir.display()))?;
        let quota = Self { dir };
        for (file, value) in files {
            fs::write(quota.dir.join(file), value)
                .map_err(|e| format!("{}: {e}", quota.dir.join(file).display()))?;
        }
        Ok(quota)
    }

    /// Moves the process (all its threads) into the group.
    fn add(&self, pid: u32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
    }
}

impl Drop for Quota {
    fn drop(&mut self) {
        // Empty by now: its one process has exited.
        let _ = fs::remove_dir(&self.dir);
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn seconds_after(stats: &Value, from_s: f64) -> Vec<Value> {
    stats["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|s| num(s, "/t_s") >= from_s)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The values of string field `key` over `secs`, each once.
fn distinct(secs: &[Value], key: &str) -> String {
    let mut values: Vec<&str> = secs
        .iter()
        .map(|s| s.pointer(key).and_then(Value::as_str).unwrap_or("-"))
        .collect();
    values.sort_unstable();
    values.dedup();
    values.join(", ")
}

fn call(
    percent: u32,
    secs: u32,
    room: u64,
    a_size: &str,
    extra: &[&str],
) -> Result<String, String> {
    let quota = Quota::new(percent)?;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&[]);
    let room = room_code(room);
    let duration = secs.to_string();
    let common = ["--duration", &duration, "--wait", "30"];
    let args = [&confab_e2e::test_media("1280x720", &common)[..], extra].concat();
    let a_args = [&confab_e2e::test_media(a_size, &common)[..], extra].concat();
    let a = Peer::start(dir.path(), "a", &server.url, &room, &a_args);
    quota.add(a.proc.pid());
    let b = Peer::start(dir.path(), "b", &server.url, &room, &args);
    let timeout = Duration::from_secs(u64::from(secs) + 60);
    let (a, b) = (a.finish(timeout), b.finish(timeout));
    let (Some(sa), Some(sb)) = (a.stats, b.stats) else {
        return Err(format!("a peer failed: {}\n{}", a.stderr, b.stderr));
    };
    let half = f64::from(secs) / 2.0;
    let (a_secs, b_secs) = (seconds_after(&sa, half), seconds_after(&sb, half));
    let field = |secs: &[Value], k: &str| -> Vec<f64> { secs.iter().map(|s| num(s, k)).collect() };
    // The heights sent, each run of equal seconds once.
    let sent_heights = |secs: &[Value]| -> Vec<u64> {
        let mut heights: Vec<u64> = field(secs, "/send_height")
            .iter()
            .map(|h| *h as u64)
            .collect();
        heights.dedup();
        heights
    };
    let (heights, b_heights) = (sent_heights(&a_secs), sent_heights(&b_secs));
    Ok(format!(
        "a sends {:.1} fps at {heights:?}p (limited by {}), encoder load {:.2}; b gets {:.1} fps, \
         glass to glass p50/p95 {:.0}/{:.0} ms, {} freezes; audio from a: mouth to ear p50/p95 \
         {:.0}/{:.0} ms, {:.1}% concealed\n    \
         b sends {:.1} fps at {b_heights:?}p (limited by {}); a gets {:.1} fps, glass to glass \
         p50/p95 {:.0}/{:.0} ms, {} freezes, {} frames dropped behind; a's decoder load {:.2}, \
         asks for {:.1} M pixels/s",
        mean(&field(&a_secs, "/send_fps")),
        distinct(&a_secs, "/quality_limitation"),
        num(&sa, "/video_send/encoder_load"),
        mean(&field(&b_secs, "/recv_fps")),
        num(&sb, "/video_recv/latency_ms/p50"),
        num(&sb, "/video_recv/latency_ms/p95"),
        num(&sb, "/video_recv/freezes"),
        num(&sb, "/audio_recv/latency_estimated_ms/p50"),
        num(&sb, "/audio_recv/latency_estimated_ms/p95"),
        num(&sb, "/audio_recv/concealed_ratio") * 100.0,
        mean(&field(&b_secs, "/send_fps")),
        distinct(&b_secs, "/quality_limitation"),
        mean(&field(&a_secs, "/recv_fps")),
        num(&sa, "/video_recv/latency_ms/p50"),
        num(&sa, "/video_recv/latency_ms/p95"),
        num(&sa, "/video_recv/freezes"),
        num(&sa, "/video_recv/frames_dropped_decoder_behind"),
        num(&sa, "/video_recv/decoder_load"),
        num(&sa, "/video_recv/asked_max_pixel_rate") / 1e6,
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: u32| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (secs, rounds) = (flag("--secs", 20), flag("--rounds", 2));
    let compare = args.iter().any(|a| a == "--compare-asks");
    let a_size = args
        .iter()
        .position(|a| a == "--a-size")
        .and_then(|i| args.get(i + 1))
        .map_or("1280x720", String::as_str);
    let mut quotas: Vec<u32> = Vec::new();
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        if a == "--compare-asks" {
            continue;
        } else if a.starts_with("--") {
            rest.next();
        } else if let Ok(p) = a.parse() {
            quotas.push(p);
        }
    }
    if quotas.is_empty() {
        quotas = vec![30, 22];
    }
    println!(
        "a sends {a_size}, b 1280x720, at 30 fps; peer a held to a share of one core; the call's \
         second half"
    );
    let mut room = 7_100;
    let no_asks: &[&str] = &["--test-no-video-limit"];
    for round in 1..=rounds {
        for &percent in &quotas {
            let mut variants: Vec<(&str, &[&str])> = vec![("asks", &[])];
            if compare {
                variants.push(("no asks", no_asks));
                if round % 2 == 0 {
                    variants.reverse();
                }
            }
            for (name, extra) in variants {
                room += 1;
                match call(percent, secs, room, a_size, extra) {
                    Ok(line) => {
                        println!("round {round}, a at {percent}% of a core, {name}: {line}")
                    }
                    Err(why) => {
                        eprintln!("cannot run: {why}");
                        std::process::exit(2);
                    }
                }
            }
        }
    }
}
