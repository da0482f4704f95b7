//! Files that cannot hurt, between two real `confab join --headless` processes: nothing is
//! written unless `--accept-files` says so and the file fits under `--max-file-mb`, and a call
//! that ends in the middle of a transfer leaves no `.part` file behind.

use std::path::Path;
use std::time::{Duration, Instant};

use confab_e2e::{random_file, room_code, serial, test_media, Outcome, Peer, Server};

/// Everything in `dir` (nothing when it was never created).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `a` offers `file` to `b`, which runs with `b_extra`; returns both outcomes.
fn offer(
    dir: &Path,
    server: &Server,
    room: &str,
    file: &Path,
    rx: &Path,
    b_extra: &[&str],
) -> (Outcome, Outcome) {
    let call = ["--duration", "2", "--wait", "30"];
    let mut a_args = test_media("320x180", &call);
    a_args.extend(["--send-file", file.to_str().unwrap()]);
    let mut b_args = test_media("320x180", &call);
    b_args.extend(["--receive-dir", rx.to_str().unwrap()]);
    b_args.extend_from_slice(b_extra);
    let a = Peer::start(dir, "a", &server.url, room, &a_args);
    let b = Peer::start(dir, "b", &server.url, room, &b_args);
    (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    )
}

#[test]
fn unaccepted_and_oversized_files_are_never_written() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let file = dir.path().join("payload.bin");
    random_file(&file, 3 * 1024 * 1024);

    // Headless without --accept-files: declined, nothing written.
    let rx = dir.path().join("rx-unasked");
    let (a, b) = offer(dir.path(), &server, &room_code(31), &file, &rx, &[]);
    assert!(b.status.success(), "b failed: {}", b.stderr);
    assert!(b.stderr.contains("--accept-files"), "{}", b.stderr);
    assert!(!a.status.success(), "a's file cannot have been delivered");
    assert!(a.stderr.contains("declined"), "{}", a.stderr);
    assert!(entries(&rx).is_empty(), "{:?}", entries(&rx));

    // Accepting, but the file is over the cap: refused before a byte is written.
    let rx = dir.path().join("rx-capped");
    let (a, b) = offer(
        dir.path(),
        &server,
        &room_code(32),
        &file,
        &rx,
        &["--accept-files", "--max-file-mb", "1"],
    );
    assert!(b.status.success(), "b failed: {}", b.stderr);
    assert!(!a.status.success(), "a's file cannot have been delivered");
    assert!(
        a.stderr.contains("more than the 1048576 bytes accepted"),
        "{}",
        a.stderr
    );
    assert!(entries(&rx).is_empty(), "{:?}", entries(&rx));
    let stats = b.stats.expect("b stats");
    assert_eq!(
        stats["files"].as_array().map(Vec::len),
        Some(0),
        "{stats:#}"
    );
}

#[test]
fn hanging_up_mid_transfer_leaves_no_part_file() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let room = room_code(33);
    let file = dir.path().join("large.bin");
    random_file(&file, 96 * 1024 * 1024);
    let rx = dir.path().join("rx");

    let stay = ["--duration", "60", "--wait", "30"];
    let mut a_args = test_media("320x180", &stay);
    a_args.extend(["--send-file", file.to_str().unwrap()]);
    let mut b_args = test_media("320x180", &stay);
    b_args.extend(["--receive-dir", rx.to_str().unwrap(), "--accept-files"]);
    let a = Peer::start(dir.path(), "a", &server.url, &room, &a_args);
    let b = Peer::start(dir.path(), "b", &server.url, &room, &b_args);

    // Wait until b is writing the file, then hang b up (Ctrl-C) in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(45);
    while !entries(&rx).iter().any(|n| n.ends_with(".part")) {
        assert!(
            Instant::now() < deadline,
            "b never started receiving:\n{}",
            b.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &b.proc.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(interrupted.success());
    let b = b.finish(Duration::from_secs(30));
    let a = a.finish(Duration::from_secs(30));
    assert!(
        !a.status.success(),
        "the file cannot have arrived whole: {}",
        a.stderr
    );
    assert!(entries(&rx).is_empty(), "left behind: {:?}", entries(&rx));
    assert!(b.stderr.contains("connected"), "{}", b.stderr);
}
