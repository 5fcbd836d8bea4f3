//! [`ConfigError`]: why a config could not be loaded, each variant that concerns the content
//! pointing at `file:line`. It owns only the error's shape and rendering; it must not build
//! or check anything itself.

use std::fmt;

use thiserror::Error;

use super::parser::ParseErrorKind;

/// Why a config could not be loaded. Every variant that concerns the content
/// displays as `file:line: what is wrong`, or `VARIABLE: what is wrong` for a value set by
/// an environment variable.
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
    #[error("{}: not valid UTF-8", at(.file, .line))]
    NotUtf8 {
        /// The path as given.
        file: String,
        /// 1-based line.
        line: usize,
    },
    /// The text is not a well-formed directive tree.
    #[error("{}: {kind}", at(.file, .line))]
    Syntax {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        kind: ParseErrorKind,
    },
    /// A known directive has no value, as in `listen;`.
    #[error("{}: {directive}: missing value", at(.file, .line))]
    MissingValue {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// The directive's name.
        directive: String,
    },
    /// A value has the wrong form, e.g. `gop_cache yes;`.
    #[error("{}: {directive}: `{value}` is not {expected}", at(.file, .line))]
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
    #[error("{}: {directive}: {value} is out of range {min}..={max}", at(.file, .line))]
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
    #[error("{}: {directive}: expected a `{{ ... }}` block", at(.file, .line))]
    BlockExpected {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// The directive's name.
        directive: String,
    },
    /// A known value directive was written with `{ }`, e.g. `listen 1935 {}`.
    #[error("{}: {directive}: takes values ending in `;`, not a block", at(.file, .line))]
    BlockUnexpected {
        /// The config file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// The directive's name.
        directive: String,
    },
    /// An edge vhost (`mode remote;`) names no origin to pull from or publish to.
    #[error("{}: vhost `{vhost}`: `mode remote;` needs `origin HOST[:PORT];`", at(.file, .line))]
    EdgeWithoutOrigin {
        /// The config file name.
        file: String,
        /// 1-based line of the `mode remote;`.
        line: usize,
        /// The vhost's name.
        vhost: String,
    },
    /// Two vhosts share a name (compared ignoring ASCII case, like hostnames).
    #[error("{}: vhost `{name}` is already defined at line {first_line}", at(.file, .line))]
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
    /// An `include` names a file found neither from the working directory nor beside the
    /// including file.
    #[error(
        "{}: include: {target} is neither in the working directory nor beside this file",
        at(.file, .line)
    )]
    IncludeNotFound {
        /// The file holding the `include`.
        file: String,
        /// 1-based line.
        line: usize,
        /// The path as written.
        target: String,
    },
    /// `include` files nest deeper than [`MAX_INCLUDE_DEPTH`](super::MAX_INCLUDE_DEPTH).
    #[error(
        "{}: include: files nested deeper than {max} levels; does a file include itself?",
        at(.file, .line)
    )]
    IncludeTooDeep {
        /// The file holding the `include` that went too deep.
        file: String,
        /// 1-based line.
        line: usize,
        /// The limit.
        max: usize,
    },
}

/// Renders a place in the config: `file:line`, or the name alone for line 0, which is what a
/// directive set by an environment variable has.
pub(super) struct At<'a>(&'a str, usize);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            0 => f.write_str(self.0),
            line => write!(f, "{}:{line}", self.0),
        }
    }
}

pub(super) fn at<'a>(file: &'a str, line: &usize) -> At<'a> {
    At(file, *line)
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
            | Self::EdgeWithoutOrigin { line, .. }
            | Self::DuplicateVhost { line, .. }
            | Self::IncludeNotFound { line, .. }
            | Self::IncludeTooDeep { line, .. } => Some(*line),
        }
    }
}
