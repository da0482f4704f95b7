//! Reading per-second timelines: the native peer's `--stats-json` `timeline` and the one
//! browser_call.js samples in the page share field names (`t_s`, `send_kbps`, `recv_fps`,
//! `freezes`, ...), so tests and benchmarks ask both the same questions.

use serde_json::Value;

/// The seconds of `timeline` with `t_s` in `from..to`.
pub fn window(timeline: &[Value], from: f64, to: f64) -> Vec<&Value> {
    timeline
        .iter()
        .filter(|s| s["t_s"].as_f64().is_some_and(|t| (from..to).contains(&t)))
        .collect()
}

/// `field` of each second (a missing or null field reads as 0).
pub fn series(secs: &[&Value], field: &str) -> Vec<f64> {
    secs.iter()
        .map(|s| s[field].as_f64().unwrap_or(0.0))
        .collect()
}

/// The mean, 0 for no values.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The last second's `t_s` (0 for an empty timeline).
pub fn end(timeline: &[Value]) -> f64 {
    timeline
        .last()
        .and_then(|s| s["t_s"].as_f64())
        .unwrap_or(0.0)
}

/// How much a cumulative counter (`freezes`) grew over `secs`.
pub fn growth(secs: &[&Value], field: &str) -> f64 {
    let at = |s: Option<&&Value>| s.and_then(|s| s[field].as_f64()).unwrap_or(0.0);
    at(secs.last()) - at(secs.first())
}

/// The longest run of consecutive seconds in which no video frame was decoded (`recv_fps` 0),
/// after the first second that had one: the longest the picture stood still, to a second.
pub fn longest_stall_s(secs: &[&Value]) -> u32 {
    let fps = series(secs, "recv_fps");
    let first = fps.iter().position(|&f| f > 0.0).unwrap_or(fps.len());
    let (mut longest, mut run) = (0, 0);
    for &f in &fps[first..] {
        run = if f > 0.0 { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stalls_are_counted_after_the_first_frame() {
        let tl: Vec<Value> = [0.0, 0.0, 30.0, 0.0, 0.0, 0.0, 12.0, 0.0]
            .iter()
            .enumerate()
            .map(|(i, f)| json!({"t_s": i as f64 + 1.0, "recv_fps": f}))
            .collect();
        let all = window(&tl, 0.0, 100.0);
        assert_eq!(longest_stall_s(&all), 3);
        assert_eq!(
            longest_stall_s(&all[..2]),
            0,
            "nothing decoded yet is no stall"
        );
    }

    #[test]
    fn windows_means_and_growth() {
        let tl: Vec<Value> = (1..=5)
            .map(|i| json!({"t_s": f64::from(i), "send_kbps": f64::from(i) * 100.0, "freezes": i / 2}))
            .collect();
        let last3 = window(&tl, 2.5, 5.5);
        assert_eq!(series(&last3, "send_kbps"), vec![300.0, 400.0, 500.0]);
        assert_eq!(mean(&series(&last3, "send_kbps")), 400.0);
        assert_eq!(growth(&last3, "freezes"), 1.0);
        assert_eq!(end(&tl), 5.0);
        assert_eq!(mean(&[]), 0.0);
    }
}
