//! A certificate of the server's own: self-signed, made on first use and kept with its key in a
//! folder (the app's config folder for "Host on this computer"), so that its SHA-256 fingerprint,
//! which the shared address carries (`wss://HOST:PORT/ws#sha256=HEX`), stays the same across runs.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The certificate and key files, and the certificate's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Lowercase hex SHA-256 of the certificate's DER encoding.
    pub sha256: String,
}

const CERT_FILE: &str = "hosted-cert.pem";
const KEY_FILE: &str = "hosted-key.pem";

/// Loads the certificate kept in `dir`, or makes one (and keeps it there).
pub fn self_signed(dir: &Path) -> io::Result<SelfSigned> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !(cert.exists() && key.exists()) {
        create(dir, &cert, &key)?;
    }
    let pem = std::fs::read(&cert)?;
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).map_err(
        |e: rustls::pki_types::pem::Error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", cert.display()),
            )
        },
    )?;
    let der: rustls::pki_types::CertificateDer<'static> = der;
    let sha256 = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(SelfSigned { cert, key, sha256 })
}

fn create(dir: &Path, cert: &Path, key: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let made = rcgen::generate_simple_self_signed(vec![
        "confab-hosted".to_owned(),
        "localhost".to_owned(),
    ])
    .map_err(io::Error::other)?;
    write_private(key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, made.cert.pem())
}

/// Writes a file only its owner can read (the key).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    io::Write::write_all(&mut options.open(path)?, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = self_signed(&dir.path().join("config")).unwrap();
        assert_eq!(first.sha256.len(), 64);
        let again = self_signed(&dir.path().join("config")).unwrap();
        assert_eq!(first, again, "the same certificate on the next run");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&first.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
        let other = self_signed(&dir.path().join("elsewhere")).unwrap();
        assert_ne!(first.sha256, other.sha256);
    }
}
