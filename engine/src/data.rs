//! What travels on the data channels. Channel `confab` (reliable, ordered) carries JSON messages:
//! chat and the file-transfer handshake. Channel `confab-file` (reliable, ordered) carries file
//! chunks as binary messages `[u32 transfer id, big-endian][bytes]`, so a large file never holds up
//! a chat message. A receiver writes into its receive folder only, under a sanitized name, and
//! keeps a file only if its size and SHA-256 match what the sender announced. The control channel
//! also carries the security code's commit-then-reveal exchange (`sas_commit`, `sas_reveal`), and
//! what the receiver's decoder keeps up with (`video_limit`).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const CONTROL_LABEL: &str = "confab";
pub const FILE_LABEL: &str = "confab-file";
/// Bytes of file data per binary message.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// The largest control message accepted (chat text is cut well below this).
pub const MAX_CONTROL_BYTES: usize = 64 * 1024;
pub const MAX_CHAT_CHARS: usize = 4000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    Chat {
        text: String,
    },
    FileOffer {
        id: u32,
        name: String,
        size: u64,
        sha256: String,
    },
    FileAccept {
        id: u32,
    },
    FileDecline {
        id: u32,
    },
    /// The receiver's verdict once all bytes arrived (or why it stopped).
    FileResult {
        id: u32,
        ok: bool,
        error: Option<String>,
    },
    FileCancel {
        id: u32,
    },
    /// The security code's exchange (see `security.rs`): SHA-256 of our random value, hex.
    SasCommit {
        hash: String,
    },
    /// Our random value, hex, sent only once the other side's commitment is in.
    SasReveal {
        nonce: String,
    },
    /// The sender's video should stay at or below this many pixels a second (width x height x
    /// frames a second), as the receiver's decoder cannot keep up with more; `null` takes the
    /// limit back. Each message replaces the last.
    VideoLimit {
        max_pixel_rate: Option<u64>,
    },
}

/// Splits a chunk message into (transfer id, bytes).
pub fn parse_chunk(data: &[u8]) -> Option<(u32, &[u8])> {
    let (id, rest) = data.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*id), rest))
}

pub fn chunk_message(id: u32, bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(4 + bytes.len());
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(bytes);
    msg
}

/// SHA-256 of a file, as lowercase hex.
pub fn file_sha256(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

const WINDOWS_RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Characters that change how a name is shown without being seen: bidi embeddings, overrides and
/// isolates ("x\u{202E}gpj.exe" shows as "xexe.jpg"), marks, and zero-width characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}'                  // Arabic letter mark
        | '\u{200B}'..='\u{200F}'   // zero-width space, non-joiner, joiner; LRM, RLM
        | '\u{202A}'..='\u{202E}'   // LRE, RLE, PDF, LRO, RLO
        | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}'   // LRI, RLI, FSI, PDI
        | '\u{206A}'..='\u{206F}'   // deprecated format characters
        | '\u{FEFF}'                 // zero-width no-break space (BOM)
        | '\u{FFF9}'..='\u{FFFB}'   // interlinear annotation
        | '\u{00AD}'                 // soft hyphen
        | '\u{180E}'                 // Mongolian vowel separator
    )
}

/// A file name that is safe on every OS and cannot leave the receive folder or disguise itself:
/// the last path component only, no control, bidi, zero-width or reserved characters, no
/// leading dots, at most 200 bytes. What is shown to the person is this name too.
pub fn sanitize_file_name(claimed: &str) -> String {
    let last = claimed.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last
        .chars()
        .filter(|&c| {
            !c.is_control()
                && !is_invisible_format(c)
                && !matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*')
        })
        .collect();
    name = name
        .trim()
        .trim_start_matches('.')
        .trim_end_matches(['.', ' '])
        .to_owned();
    while name.len() > 200 {
        name.pop();
    }
    let stem = name.split('.').next().unwrap_or("").to_ascii_lowercase();
    if WINDOWS_RESERVED.contains(&stem.as_str()) {
        name.insert(0, '_');
    }
    if name.is_empty() {
        name = "received-file".to_owned();
    }
    name
}

/// `dir/name`, or `dir/stem (n).ext` when that exists already.
pub fn unique_path(dir: &Path, name: &str) -> PathBuf {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return candidate;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (1..)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .expect("invariant: some numbered name is free")
}

/// Bytes free for this user on the file system holding `dir` (or its nearest existing parent);
/// `None` when the system will not say (the write then fails cleanly if space runs out, and the
/// `.part` file is removed).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    fs4::available_space(existing).ok()
}

/// Space left free on the disk after a file is accepted, for everything else on it.
pub const FREE_SPACE_MARGIN_BYTES: u64 = 256 * 1024 * 1024;

/// Whether a file of `size` bytes may be accepted into `dir`: within `max_bytes`, and leaving
/// [`FREE_SPACE_MARGIN_BYTES`] free on the disk.
pub fn check_room(dir: &Path, size: u64, max_bytes: u64) -> Result<(), FileError> {
    if size > max_bytes {
        return Err(FileError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    if let Some(free) = free_bytes(dir) {
        if size.saturating_add(FREE_SPACE_MARGIN_BYTES) > free {
            return Err(FileError::NoSpace { size, free });
        }
    }
    Ok(())
}

/// A file being received: bytes go to a hidden `.part` file that becomes the real file only when
/// size and hash match. The `.part` file is removed whenever the transfer ends otherwise,
/// including when the value is simply dropped (the call ended).
pub struct IncomingFile {
    pub name: String,
    pub size: u64,
    sha256: String,
    dir: PathBuf,
    part: PathBuf,
    out: File,
    hasher: Sha256,
    pub received: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("cannot write into {0}: {1}")]
    Write(String, String),
    #[error("the sender sent more than the {0} bytes it announced")]
    TooMuch(u64),
    #[error("the file arrived damaged (SHA-256 mismatch)")]
    HashMismatch,
    #[error("announced SHA-256 {0:?} is not 64 hex digits")]
    BadHash(String),
    #[error("it is {size} bytes, more than the {max} bytes accepted")]
    TooLarge { size: u64, max: u64 },
    #[error("it is {size} bytes and the disk has {free} bytes free")]
    NoSpace { size: u64, free: u64 },
}

impl IncomingFile {
    pub fn create(
        dir: &Path,
        id: u32,
        claimed_name: &str,
        size: u64,
        sha256: &str,
    ) -> Result<Self, FileError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FileError::BadHash(sha256.chars().take(80).collect()));
        }
        let write_err =
            |e: std::io::Error| FileError::Write(dir.display().to_string(), e.to_string());
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let name = sanitize_file_name(claimed_name);
        let part = dir.join(format!(".{name}.{id}.part"));
        let out = File::create(&part).map_err(write_err)?;
        Ok(Self {
            name,
            size,
            sha256: sha256.to_ascii_lowercase(),
            dir: dir.to_owned(),
            part,
            out,
            hasher: Sha256::new(),
            received: 0,
        })
    }

    /// Appends a chunk; `Ok(true)` once all announced bytes are in.
    pub fn write(&mut self, bytes: &[u8]) -> Result<bool, FileError> {
        if self.received + bytes.len() as u64 > self.size {
            return Err(FileError::TooMuch(self.size));
        }
        self.out
            .write_all(bytes)
            .map_err(|e| FileError::Write(self.dir.display().to_string(), e.to_string()))?;
        self.hasher.update(bytes);
        self.received += bytes.len() as u64;
        Ok(self.received == self.size)
    }

    /// Verifies the hash and moves the file into place; returns its final path and hash.
    pub fn finish(self) -> Result<(PathBuf, String), FileError> {
        let write_err =
            |e: std::io::Error| FileError::Write(self.dir.display().to_string(), e.to_string());
        self.out.sync_all().map_err(write_err)?;
        let digest = hex::encode(self.hasher.clone().finalize());
        if digest != self.sha256 {
            let _ = std::fs::remove_file(&self.part);
            return Err(FileError::HashMismatch);
        }
        let path = unique_path(&self.dir, &self.name);
        std::fs::rename(&self.part, &path).map_err(write_err)?;
        Ok((path, digest))
    }

    /// Removes the partial file (transfer cancelled or failed).
    pub fn abandon(self) {
        drop(self);
    }
}

impl Drop for IncomingFile {
    /// A finished file was renamed away; anything else is a partial file to remove.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_or_hide() {
        let cases = [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("..\\..\\Windows\\system32\\evil.dll", "evil.dll"),
            ("/absolute/path/x.txt", "x.txt"),
            ("..", "received-file"),
            ("", "received-file"),
            (".bashrc", "bashrc"),
            ("a\u{0}b\nc.txt", "abc.txt"),
            ("what?<>|*.txt", "what.txt"),
            ("CON.txt", "_CON.txt"),
            ("nul", "_nul"),
            ("trailing. . ", "trailing"),
            ("C:secret", "Csecret"),
            // Bidi overrides and isolates cannot make "exe" read as "jpg".
            ("x\u{202E}gpj.exe", "xgpj.exe"),
            ("invoice\u{2067}fdp.\u{2069}scr", "invoicefdp.scr"),
            ("a\u{200E}b\u{200F}c\u{061C}.txt", "abc.txt"),
            // Zero-width characters cannot hide a difference between two names.
            ("pay\u{200B}pal\u{200D}.pdf", "paypal.pdf"),
            ("\u{FEFF}bom.txt", "bom.txt"),
            ("\u{2060}.bashrc", "bashrc"),
            ("soft\u{00AD}hyphen", "softhyphen"),
            // Only invisible characters: a neutral name.
            ("\u{202E}\u{200B}", "received-file"),
            // Ordinary non-ASCII names are kept.
            ("Grüße – 日本.txt", "Grüße – 日本.txt"),
        ];
        for (claimed, expected) in cases {
            assert_eq!(sanitize_file_name(claimed), expected, "{claimed:?}");
        }
        let long = "x".repeat(1000);
        assert_eq!(sanitize_file_name(&long).len(), 200);
    }

    #[test]
    fn room_is_checked_before_accepting() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_room(dir.path(), 10, 10), Ok(()));
        assert_eq!(
            check_room(dir.path(), 11, 10),
            Err(FileError::TooLarge { size: 11, max: 10 })
        );
        // An announced 100 TB file is refused by the disk check even under a huge cap.
        let huge = 100u64 << 40;
        assert!(matches!(
            check_room(dir.path(), huge, u64::MAX),
            Err(FileError::NoSpace { size, .. }) if size == huge
        ));
        // A folder that does not exist yet is measured on its nearest existing parent.
        assert!(free_bytes(&dir.path().join("not/yet")).is_some());
    }

    #[test]
    fn a_dropped_transfer_leaves_no_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let sha = hex::encode(Sha256::digest(b"abcdef"));
        let mut file = IncomingFile::create(dir.path(), 9, "half.bin", 6, &sha).unwrap();
        assert!(!file.write(b"abc").unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "a .part file"
        );
        drop(file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn control_messages_have_a_stable_shape() {
        let msg = ControlMessage::FileOffer {
            id: 3,
            name: "a".into(),
            size: 9,
            sha256: "ab".into(),
        };
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            serde_json::json!({"type": "file_offer", "id": 3, "name": "a", "size": 9, "sha256": "ab"})
        );
        assert_eq!(
            parse_chunk(&chunk_message(7, b"xyz")),
            Some((7, &b"xyz"[..]))
        );
        assert_eq!(parse_chunk(&[1, 2]), None);
        // What the web page reads too (`onVideoLimit`): a number, or null to take it back.
        let limit = |max| ControlMessage::VideoLimit {
            max_pixel_rate: max,
        };
        assert_eq!(
            serde_json::to_value(limit(Some(16_588_800))).unwrap(),
            serde_json::json!({"type": "video_limit", "max_pixel_rate": 16_588_800})
        );
        assert_eq!(
            serde_json::from_str::<ControlMessage>(
                r#"{"type":"video_limit","max_pixel_rate":null}"#
            )
            .unwrap(),
            limit(None)
        );
        assert!(serde_json::from_str::<ControlMessage>(
            r#"{"type":"video_limit","max_pixel_rate":-1}"#
        )
        .is_err());
    }

    #[test]
    fn receiving_checks_size_and_hash_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"hello confab";
        let sha = hex::encode(Sha256::digest(data));
        std::fs::write(dir.path().join("note.txt"), b"already here").unwrap();

        let mut file =
            IncomingFile::create(dir.path(), 1, "../note.txt", data.len() as u64, &sha).unwrap();
        assert!(!file.write(&data[..5]).unwrap());
        assert!(file.write(&data[5..]).unwrap());
        let (path, digest) = file.finish().unwrap();
        assert_eq!(path, dir.path().join("note (1).txt"));
        assert_eq!(digest, sha);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(
            std::fs::read(dir.path().join("note.txt")).unwrap(),
            b"already here"
        );

        let mut damaged = IncomingFile::create(dir.path(), 2, "d.bin", 3, &sha).unwrap();
        assert!(damaged.write(b"abc").unwrap());
        assert_eq!(damaged.finish().err(), Some(FileError::HashMismatch));
        assert!(!dir.path().join("d.bin").exists());

        let mut greedy = IncomingFile::create(dir.path(), 3, "g.bin", 2, &sha).unwrap();
        assert_eq!(greedy.write(b"abc").err(), Some(FileError::TooMuch(2)));
        greedy.abandon();
        assert!(IncomingFile::create(dir.path(), 4, "x", 1, "nothex").is_err());
        // Only the two real files remain: no .part leftovers.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["note (1).txt", "note.txt"]);
    }
}
