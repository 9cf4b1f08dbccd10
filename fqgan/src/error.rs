//! The one error type of the library. Every message names the file, field or value at fault.

use std::path::PathBuf;

pub use crate::runtime::Arg;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The message holds the io error; as a `source` too, `{:#}` (anyhow's chain, as the CLI
    // prints errors) would repeat it.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("invalid config: {0}")]
    Config(String),
    #[error("{path}: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Image { path: PathBuf, message: String },
    /// A `.fqt` token file that is malformed, corrupt, or made for another model.
    #[error("{path}: {message}")]
    Tokens { path: PathBuf, message: String },
    #[error("invalid input: {0}")]
    Input(String),
    /// An argument of a [`crate::runtime`] call, named so that each front end can say it its
    /// own way (`params->top_p` in C); `message` follows the name: "is 0; it must be ...".
    #[error("{}{} {message}", arg.name(), index.map(|i| format!("[{i}]")).unwrap_or_default())]
    Argument { arg: Arg, index: Option<usize>, message: String },
    #[error("device: {0}")]
    Device(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), error: source }
    }

    pub(crate) fn tokens(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Tokens { path: path.into(), message: message.into() }
    }

    pub(crate) fn argument(arg: Arg, message: impl Into<String>) -> Self {
        Error::Argument { arg, index: None, message: message.into() }
    }

    /// Element `index` of a list argument.
    pub(crate) fn argument_at(arg: Arg, index: usize, message: impl Into<String>) -> Self {
        Error::Argument { arg, index: Some(index), message: message.into() }
    }

    pub(crate) fn weights(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Weights { path: path.into(), message: message.into() }
    }
}
