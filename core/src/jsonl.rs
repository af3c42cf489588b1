//! Reading JSON-lines files while validating them. Every problem is an error
//! that names the file, the 1-based line number and what is wrong: nothing is
//! skipped silently, because a checker that drops a malformed line could turn
//! a loss into a pass.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A run-folder file that could not be read or is malformed. User error
/// (exit code 2) except for `Io`, which is reported the same way since the
/// user pointed at the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {}:{line}: {what}", path.display())]
    Line { path: PathBuf, line: usize, what: String },
}

impl LoadError {
    pub fn line(path: &Path, line: usize, what: impl Into<String>) -> Self {
        LoadError::Line { path: path.to_path_buf(), line, what: what.into() }
    }
}

/// Parses JSON-lines text: one object per line, no blank lines except an
/// optional trailing newline. A last line without its newline is a truncated
/// write and is rejected unless it parses whole (a crashed writer that died
/// mid-line leaves invalid JSON, which is reported with its line number).
/// `validate` sees each parsed value with its line number and may reject it.
pub fn parse_lines<T, F>(path: &Path, text: &str, mut validate: F) -> Result<Vec<T>, LoadError>
where
    T: DeserializeOwned,
    F: FnMut(&T, usize) -> Result<(), String>,
{
    let mut out = Vec::new();
    for (index, raw) in text.split_terminator('\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            return Err(LoadError::line(path, line, "empty line (every line must be one JSON object)"));
        }
        let value: T = serde_json::from_str(raw).map_err(|e| LoadError::line(path, line, e.to_string()))?;
        validate(&value, line).map_err(|what| LoadError::line(path, line, what))?;
        out.push(value);
    }
    Ok(out)
}

/// Reads a whole JSON-lines file and parses it with [`parse_lines`]'s rules.
pub fn read_lines<T, F>(path: &Path, mut validate: F) -> Result<Vec<T>, LoadError>
where
    T: DeserializeOwned,
    F: FnMut(&T, usize) -> Result<(), String>,
{
    let mut out = Vec::new();
    for_each_line(path, |value: T, line| {
        validate(&value, line)?;
        out.push(value);
        Ok(())
    })?;
    Ok(out)
}

/// Streams a JSON-lines file without holding it in memory (histories of
/// millions of ops), with the same rules as [`parse_lines`]. `visit` gets
/// each parsed value and its 1-based line number, and may reject it.
pub fn for_each_line<T, F>(path: &Path, mut visit: F) -> Result<(), LoadError>
where
    T: DeserializeOwned,
    F: FnMut(T, usize) -> Result<(), String>,
{
    use std::io::BufRead;
    let io = |source| LoadError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = String::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader.read_line(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let raw = buf.strip_suffix('\n').unwrap_or(&buf);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            return Err(LoadError::line(path, line, "empty line (every line must be one JSON object)"));
        }
        let value: T = serde_json::from_str(raw).map_err(|e| LoadError::line(path, line, e.to_string()))?;
        visit(value, line).map_err(|what| LoadError::line(path, line, what))?;
    }
}
