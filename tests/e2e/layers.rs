//! The layering ARCHITECTURE.md promises, checked on the real dependency graph (`cargo tree`): the
//! call engine never links a device, window or widget crate; the media vocabulary links no codec,
//! network or device crate; the codecs link no device or network crate.

use std::path::Path;
use std::process::Command;

/// Every package in the normal (non-dev) dependency tree of `package`.
fn dependencies(package: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("invariant: tests/ sits in the workspace");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn check(package: &str, forbidden: &[&str]) {
    let deps = dependencies(package);
    assert!(
        deps.iter().any(|d| d == package),
        "cargo tree printed no {package}: {deps:?}"
    );
    let found: Vec<&String> = deps
        .iter()
        .filter(|d| forbidden.contains(&d.as_str()))
        .collect();
    assert!(found.is_empty(), "{package} depends on {found:?}");
}

#[test]
fn each_layer_depends_only_on_the_layers_below() {
    const DEVICES: &[&str] = &["cpal", "nokhwa", "xcap", "alsa", "confab-devices"];
    const UI: &[&str] = &[
        "egui",
        "eframe",
        "winit",
        "egui-wgpu",
        "egui_glow",
        "confab",
    ];
    const CODECS: &[&str] = &[
        "openh264",
        "opus",
        "webrtc-audio-processing",
        "confab-codecs",
    ];
    const NETWORK: &[&str] = &[
        "webrtc",
        "rtc",
        "tokio",
        "confab-engine",
        "confab-signaling",
    ];
    let all = |lists: &[&[&'static str]]| lists.concat();
    check("confab-engine", &all(&[DEVICES, UI]));
    check("confab-codecs", &all(&[DEVICES, UI, NETWORK]));
    check("confab-devices", &all(&[UI, NETWORK, CODECS]));
    check("confab-media", &all(&[DEVICES, UI, NETWORK, CODECS]));
    // And the check can see a dependency when there is one.
    assert!(dependencies("confab-engine").iter().any(|d| d == "webrtc"));
}
