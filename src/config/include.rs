//! Reading config files: the one [`Config::load`](super::Config::load) is given and those it
//! pulls in with SRS's `include FILE ...;`, spliced in place of the directive, in any block,
//! as SRS's `parse_conf` does. It owns the only file reads of the config; it must not give
//! directives meaning (build.rs does).
//!
//! A relative include path is taken from the working directory first, as SRS takes it (its
//! examples say `include ./conf/include.vhost.conf;` and run from the folder that holds
//! `conf/`), then from the including file's directory, so that a config tree moved
//! elsewhere still finds its parts. Each spliced directive remembers its file, so messages
//! point into the included file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::ConfigError;
use super::parser::{parse_tree, Directive};

/// Largest config file read. Real configs are a few tens of KiB; the cap stops
/// `-c /dev/zero` or a wrong path from eating all memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Deepest chain of includes; a file that includes itself reaches it at once.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// The file's text, at most [`MAX_FILE_BYTES`], as UTF-8; messages name it `file`.
pub(super) fn read_text(path: &Path, file: &str) -> Result<String, ConfigError> {
    let io_err = |source| ConfigError::Io {
        file: file.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io_err)?
        // One byte past the limit tells "exactly at" from "over".
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            file: file.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        ConfigError::NotUtf8 {
            file: file.to_owned(),
            line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
        }
    })
}

/// Replaces every `include` in `tree` (read from `path`, named `file` in messages) by the
/// directives of the files it names, recursively.
pub(super) fn expand(
    tree: &mut Vec<Directive>,
    path: &Path,
    file: &str,
    depth: usize,
) -> Result<(), ConfigError> {
    let mut expanded = Vec::with_capacity(tree.len());
    for mut d in std::mem::take(tree) {
        if d.name != "include" {
            expand(&mut d.children, path, file, depth)?;
            expanded.push(d);
            continue;
        }
        let at = d.origin.as_deref().unwrap_or(file).to_owned();
        if d.block {
            return Err(ConfigError::BlockUnexpected {
                file: at,
                line: d.line,
                directive: d.name,
            });
        }
        if d.args.is_empty() {
            return Err(ConfigError::MissingValue {
                file: at,
                line: d.line,
                directive: d.name,
            });
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::IncludeTooDeep {
                file: at,
                line: d.line,
                max: MAX_INCLUDE_DEPTH,
            });
        }
        for target in &d.args {
            let found = resolve(target, path);
            if !found.exists() {
                return Err(ConfigError::IncludeNotFound {
                    file: at,
                    line: d.line,
                    target: target.clone(),
                });
            }
            let name = found.display().to_string();
            let text = read_text(&found, &name)?;
            let mut included = parse_tree(&text).map_err(|e| ConfigError::Syntax {
                file: name.clone(),
                line: e.line,
                kind: e.kind,
            })?;
            let origin: Arc<str> = Arc::from(name.as_str());
            mark(&mut included, &origin);
            expand(&mut included, &found, &name, depth + 1)?;
            expanded.append(&mut included);
        }
    }
    *tree = expanded;
    Ok(())
}

/// `target` as written if absolute or found from the working directory, else beside the
/// including file.
fn resolve(target: &str, including: &Path) -> PathBuf {
    let as_written = PathBuf::from(target);
    if as_written.is_absolute() || as_written.exists() {
        return as_written;
    }
    match including.parent() {
        Some(dir) => dir.join(target),
        None => as_written,
    }
}

fn mark(tree: &mut [Directive], origin: &Arc<str>) {
    for d in tree {
        d.origin = Some(origin.clone());
        mark(&mut d.children, origin);
    }
}
