//! Why a source or sink could not open or stopped.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable {kind} file: {reason}")]
    BadFile {
        path: PathBuf,
        kind: &'static str,
        reason: String,
    },
    #[error("{0} stopped")]
    Stopped(String),
}
