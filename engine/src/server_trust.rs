//! Which TLS certificates a signaling server may show: the usual web roots, the roots of a custom
//! CA file (`--server-ca`), or exactly one self-signed certificate pinned by the SHA-256 of its DER
//! encoding (`--server-cert-sha256`, or `#sha256=HEX` at the end of the address a hosted server shares).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest as _, Sha256};

/// What the client trusts besides (or instead of) the web's roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTrust {
    /// The SHA-256 of the one certificate to accept, as hex (colons allowed).
    pub pin_sha256: Option<String>,
    /// A PEM file of CA certificates to trust instead of the web's roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    #[error("{0:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")]
    BadFingerprint(String),
    #[error("cannot read the CA file {0}: {1}")]
    CaFile(String, String),
    #[error("a pinned certificate or a CA file needs a wss:// address")]
    NotTls,
}

/// Splits `#sha256=HEX` off a server address: (address, pin).
pub fn split_pin(url: &str) -> (String, Option<String>) {
    let url = url.trim();
    match url.split_once('#') {
        Some((base, fragment)) => {
            let pin = fragment
                .split('&')
                .find_map(|part| part.strip_prefix("sha256="))
                .map(str::to_owned);
            (base.to_owned(), pin)
        }
        None => (url.to_owned(), None),
    }
}

/// `ab:CD:...` or `abcd...` -> 32 bytes.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TrustError> {
    let bad = || TrustError::BadFingerprint(text.chars().take(100).collect());
    let digits: String = text.trim().chars().filter(|&c| c != ':').collect();
    let bytes = hex::decode(&digits).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

/// Lowercase hex SHA-256 of a DER certificate, as pins are written.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts the one certificate whose SHA-256 is pinned (its name and dates do not matter: a
/// self-signed certificate has no authority to vouch for them); the handshake signatures are
/// still checked, so the server must hold that certificate's key.
#[derive(Debug)]
pub struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// The fingerprint of a refused certificate, for the error message.
    refused: Mutex<Option<String>>,
}

impl PinVerifier {
    pub fn new(pin: [u8; 32]) -> Self {
        Self {
            pin,
            provider: provider(),
            refused: Mutex::new(None),
        }
    }

    /// The fingerprint of the certificate refused last, if one was.
    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if digest == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        *self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hex::encode(digest));
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client TLS configuration other than the defaults.
pub struct TlsSetup {
    pub config: Arc<ClientConfig>,
    /// The pin's verifier, to say which certificate it refused.
    pub pinned: Option<Arc<PinVerifier>>,
}

/// The TLS setup for `trust`: `None` means the defaults (the web's roots).
pub fn client_config(trust: &ServerTrust) -> Result<Option<TlsSetup>, TrustError> {
    if let Some(pin) = &trust.pin_sha256 {
        let verifier = Arc::new(PinVerifier::new(parse_fingerprint(pin)?));
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("invariant: the default provider supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        return Ok(Some(TlsSetup {
            config: Arc::new(config),
            pinned: Some(verifier),
        }));
    }
    if let Some(path) = &trust.ca_file {
        let ca_err = |e: String| TrustError::CaFile(path.display().to_string(), e);
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_err(e.to_string()))? {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ca_err("no certificate in it".into()));
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("invariant: the default provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        return Ok(Some(TlsSetup {
            config: Arc::new(config),
            pinned: None,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_come_from_the_address_or_a_flag() {
        let hex64 = "ab".repeat(32);
        let cases = [
            ("wss://10.0.0.2:8443/ws", ("wss://10.0.0.2:8443/ws", None)),
            (
                &*format!("wss://10.0.0.2:8443/ws#sha256={hex64}"),
                ("wss://10.0.0.2:8443/ws", Some(hex64.as_str())),
            ),
            (
                &*format!(" wss://h:1#x=1&sha256={hex64} "),
                ("wss://h:1", Some(hex64.as_str())),
            ),
            ("wss://h:1#other", ("wss://h:1", None)),
        ];
        for (url, (base, pin)) in cases {
            assert_eq!(
                split_pin(url),
                (base.to_owned(), pin.map(str::to_owned)),
                "{url}"
            );
        }
        assert_eq!(parse_fingerprint(&hex64), Ok([0xab; 32]));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons), Ok([0xab; 32]));
        for bad in ["", "abc", &"ab".repeat(31), &"zz".repeat(32)] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        let trust = ServerTrust {
            pin_sha256: None,
            ca_file: Some(empty),
        };
        assert!(matches!(client_config(&trust), Err(TrustError::CaFile(..))));
        let missing = ServerTrust {
            pin_sha256: None,
            ca_file: Some(dir.path().join("missing.pem")),
        };
        assert!(matches!(
            client_config(&missing),
            Err(TrustError::CaFile(..))
        ));
        assert!(matches!(client_config(&ServerTrust::default()), Ok(None)));
    }
}
