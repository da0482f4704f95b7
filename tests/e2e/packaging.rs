//! The Linux package: packaging/linux/build-deb.sh builds a .deb from the release binaries; it
//! must hold both binaries, a valid desktop file and the icon, and the unpacked `confab` must run.

use std::path::PathBuf;
use std::process::Command;

use confab_e2e::serial;

#[test]
fn the_deb_package_is_complete_and_runs() {
    let _machine = serial();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(repo.join("packaging/linux/build-deb.sh"))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "build-deb.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = repo.join(String::from_utf8_lossy(&out.stdout).trim());
    assert!(deb.exists(), "{}", deb.display());

    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "./usr/bin/confab",
        "./usr/bin/confab-signal",
        "./usr/share/applications/confab.desktop",
        "./usr/share/icons/hicolor/256x256/apps/confab.png",
    ] {
        assert!(
            listing.contains(path),
            "{path} missing from the package:\n{listing}"
        );
    }
    let info = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .args(["Package", "Version", "Depends"])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Package: confab") && info.contains("libasound2"),
        "{info}"
    );

    let dir = tempfile::tempdir().unwrap();
    assert!(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(dir.path())
        .status()
        .unwrap()
        .success());
    let version = Command::new(dir.path().join("usr/bin/confab"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("confab "),
        "{version:?}"
    );
    let signal = Command::new(dir.path().join("usr/bin/confab-signal"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(signal.status.success());
    let validate = Command::new("desktop-file-validate")
        .arg(dir.path().join("usr/share/applications/confab.desktop"))
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stdout)
    );
    // Stripped of debug info: a size fit for a download.
    let size = std::fs::metadata(&deb).unwrap().len();
    eprintln!("{}: {:.1} MB", deb.display(), size as f64 / 1e6);
    assert!(size < 60_000_000, "{size} bytes");
}
