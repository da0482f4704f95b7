//! The delay tool's side in the harness: tests/tools/nfq_delay.c compiled once per source
//! version, and the control pipes of one running copy (one command in, one line back).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command};
use std::sync::OnceLock;

use crate::Proc;

/// The running nfq_delay of one router and its control pipes.
pub(super) struct DelayTool {
    pub(super) stdin: ChildStdin,
    pub(super) stdout: BufReader<ChildStdout>,
    pub(super) _proc: Proc,
}

impl DelayTool {
    /// Sends one command and returns the tool's one-line answer.
    pub(super) fn ask(&mut self, command: &str) -> Result<String, String> {
        writeln!(self.stdin, "{command}").map_err(|e| format!("nfq_delay: {e}"))?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => Ok(line.trim().to_owned()),
            Ok(_) => Err("nfq_delay exited".into()),
            Err(e) => Err(format!("nfq_delay: {e}")),
        }
    }
}

/// The delay tool, compiled once per source version into the target directory.
pub(super) fn delay_tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        use sha2::Digest as _;
        const SOURCE: &str = include_str!("../../tools/nfq_delay.c");
        let hash = hex::encode(sha2::Sha256::digest(SOURCE.as_bytes()));
        let dir = crate::bin_dir().join("netem-tools");
        let tool = dir.join(format!("nfq_delay-{}", &hash[..16]));
        if tool.exists() {
            return tool;
        }
        std::fs::create_dir_all(&dir).expect("create the tool directory");
        let source = dir.join(format!("nfq_delay-{}.c", &hash[..16]));
        std::fs::write(&source, SOURCE).expect("write nfq_delay.c");
        // Built under a private name and renamed, so concurrent test processes never run half a file.
        let partial = dir.join(format!("nfq_delay-{}.{}", &hash[..16], std::process::id()));
        let out = Command::new("gcc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&partial)
            .arg(&source)
            .arg("-lnetfilter_queue")
            .output()
            .expect("gcc is needed for the network emulator (scripts/setup.sh --test)");
        assert!(
            out.status.success(),
            "building nfq_delay failed (libnetfilter-queue-dev comes with scripts/setup.sh --test):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&partial, &tool).expect("move nfq_delay into place");
        tool
    })
}
