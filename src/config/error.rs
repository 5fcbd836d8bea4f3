//! [`ConfigError`]: why a config could not be loaded, each variant that concerns the content
//! pointing at `file:line`. It owns only the error's shape and rendering; it must not build
//! or check anything itself.

use thiserror::Error;

use super::parser::ParseErrorKind;

/// Why a config could not be loaded. Every variant that concerns the content
/// displays as `file:line: what is wrong`.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be opened or read; there is no line to point at.
    #[error("{file}: cannot read config: {source}")]
    Io {
        /// The path as given.
        file: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file exceeds [`MAX_FILE_BYTES`](super::MAX_FILE_BYTES).
    #[error("{file}: larger than {limit} bytes, which is not a plausible config file")]
    TooLarge {
        /// The path as given.
        file: String,
        /// The limit, [`MAX_FILE_BYTES`](super::MAX_FILE_BYTES).
        limit: u64,
    },
    /// The file is not UTF-8; `line` holds the first invalid byte.
    #[error("{file}:{line}: not valid UTF-8")]
    NotUtf8 {
        /// The path as given.
        file: String,
        /// 1-based line.
        line: usize,
    },
    /// The text is not a well-formed directive tree.
    #[error("{file}:{line}: {kind}")]
    Syntax {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        kind: ParseErrorKind,
    },
    /// A known directive has no value, as in `listen;`.
    #[error("{file}:{line}: {directive}: missing value")]
    MissingValue {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// The directive's name.
        directive: String,
    },
    /// A value has the wrong form, e.g. `gop_cache yes;`.
    #[error("{file}:{line}: {directive}: `{value}` is not {expected}")]
    InvalidValue {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// The directive's name.
        directive: String,
        /// The rejected value.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A whole number outside its allowed range.
    #[error("{file}:{line}: {directive}: {value} is out of range {min}..={max}")]
    OutOfRange {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// The directive's name.
        directive: String,
        /// The rejected value as written.
        value: String,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A known section was written without `{ }`, e.g. `vhost a;`.
    #[error("{file}:{line}: {directive}: expected a `{{ ... }}` block")]
    BlockExpected {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// The directive's name.
        directive: String,
    },
    /// A known value directive was written with `{ }`, e.g. `listen 1935 {}`.
    #[error("{file}:{line}: {directive}: takes values ending in `;`, not a block")]
    BlockUnexpected {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// The directive's name.
        directive: String,
    },
    /// Two vhosts share a name (compared ignoring ASCII case, like hostnames).
    #[error("{file}:{line}: vhost `{name}` is already defined at line {first_line}")]
    DuplicateVhost {
        /// The config file name.
        file: String,
        /// 1-based line of the second definition.
        line: usize,
        /// The repeated name.
        name: String,
        /// 1-based line of the first definition.
        first_line: usize,
    },
}

impl ConfigError {
    /// The 1-based line the error points at, if it concerns the content.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Io { .. } | Self::TooLarge { .. } => None,
            Self::NotUtf8 { line, .. }
            | Self::Syntax { line, .. }
            | Self::MissingValue { line, .. }
            | Self::InvalidValue { line, .. }
            | Self::OutOfRange { line, .. }
            | Self::BlockExpected { line, .. }
            | Self::BlockUnexpected { line, .. }
            | Self::DuplicateVhost { line, .. } => Some(*line),
        }
    }
}
