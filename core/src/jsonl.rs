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
    for_each_raw_line(path, |raw, line| {
        let value: T = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        visit(value, line)
    })
}

/// The line splitting of [`for_each_line`] without the parsing: `visit` gets
/// each non-empty line (without its line ending) and its 1-based number, so it
/// can deserialize into a type that borrows from the line (e.g.
/// [`crate::history::OpRef`]). An `Err` from `visit` becomes a
/// [`LoadError::Line`] naming the file and line.
pub fn for_each_raw_line<F>(path: &Path, mut visit: F) -> Result<(), LoadError>
where
    F: FnMut(&str, usize) -> Result<(), String>,
{
    use std::io::BufRead;
    let io = |source| LoadError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        // Decoded per line (not by read_line) so a non-UTF-8 line is reported
        // with its number instead of as a bare I/O error.
        let text =
            std::str::from_utf8(&buf).map_err(|e| LoadError::line(path, line, format!("not UTF-8 text ({e})")))?;
        let raw = text.strip_suffix('\n').unwrap_or(text);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            return Err(LoadError::line(path, line, "empty line (every line must be one JSON object)"));
        }
        visit(raw, line).map_err(|what| LoadError::line(path, line, what))?;
    }
}
