//! Power loss for any binary. A node runs under `jetsam-tracer` (ptrace with
//! a seccomp filter, so only the file-mutating and sync syscalls stop), which
//! keeps an undo log of unsynced writes to files under the node's data dir in
//! a state dir outside it. After the controller SIGKILLs the node's process
//! group, [`discard`] puts every tracked file back to its last synced content
//! (all unsynced pages, a seeded fraction, or those younger than a write-back
//! age) and clears the log. [`set_io_error`] makes the traced node's syncs
//! fail with EIO and/or its writes with ENOSPC.
//!
//! What it does not model: writes through shared writable mmap (reported as
//! warnings), sendfile/splice into files, and directory entries: create,
//! rename and unlink are durable when they return (a file created and
//! written but never synced comes back with its synced size, 0). See
//! docs/power-loss.md.

pub mod audit;
pub mod dirents;
mod discard;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod tracer;
pub mod trigger;
pub mod undo;

pub use dirents::DirentModel;
pub use discard::{DiscardReport, DiscardedFile, discard, discard_with};
pub use undo::PAGE_SIZE;

use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the tracer binary.
pub const TRACER_BIN_ENV: &str = "JETSAM_TRACER_BIN";
/// File name of the tracer binary.
pub const TRACER_BIN_NAME: &str = "jetsam-tracer";
/// `S/tracee.pid`: the traced node's pid, written by the tracer.
pub const TRACEE_PID_FILE: &str = "tracee.pid";
/// `S/tracees`: `<pid> <start time>` of every process the tracer saw forked
/// (PostgreSQL's backends, say, which leave the node's process group with
/// setsid): a power loss waits for them too before putting files back.
pub const TRACEES_FILE: &str = "tracees";
/// `S/lock`: flocked by the tracer for its whole life; discard refuses while held.
pub const LOCK_FILE: &str = "lock";
/// `S/io-error`: present while the io-error fault is on; holds the mode.
pub const IO_ERROR_FILE: &str = "io-error";
/// `S/warnings.log`: one line per thing the tracer saw but cannot model.
pub const WARNINGS_FILE: &str = "warnings.log";

/// What the power-loss fault could not do.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error(
        "failed to find the jetsam-tracer binary (looked at {looked}); run `cargo build --workspace --bins` \
         or set {TRACER_BIN_ENV}"
    )]
    TracerMissing { looked: String },
    #[error("failed to {action} {path}: {source}; check the path exists and is writable")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error(
        "failed to lock the state dir {path} within {waited_ms} ms: a tracer still owns it; \
         SIGKILL the node's process group and wait for it before discarding"
    )]
    Busy { path: PathBuf, waited_ms: u64 },
    #[error(
        "failed to read the power-loss discard model: {0}; use discard = \"all\", keep_fraction = <0.0..=1.0> \
         or writeback_after = \"30s\""
    )]
    BadModel(String),
    #[error("failed to restore {path}: {detail}; the state dir does not match the data dir, start the node afresh")]
    Inconsistent { path: PathBuf, detail: String },
}

impl PowerError {
    /// Exit code per `jetsam_core::exit`: a bad model is the user's input,
    /// everything else the environment.
    pub fn exit_code(&self) -> i32 {
        match self {
            PowerError::BadModel(_) => jetsam_core::exit::BAD_INPUT,
            _ => jetsam_core::exit::ENVIRONMENT,
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> PowerError {
        PowerError::Io { action, path: path.to_path_buf(), source }
    }
}

/// Which unsynced writes a power loss throws away.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DiscardModel {
    /// Every unsynced page (the worst case, default).
    #[default]
    All,
    /// Each unsynced page survives (keeps its newer content, whole) with this
    /// probability, chosen by the seed: torn write-back.
    KeepFraction(f64),
    /// Pages first dirtied at least this long before the power loss were
    /// written back by the kernel and survive; younger ones are discarded.
    WritebackAfter(#[serde(with = "jetsam_core::duration::serde_human")] Duration),
}

impl DiscardModel {
    /// Reads the model from a scenario fault's options: `discard = "all"`,
    /// `keep_fraction = 0.3` or `writeback_after = "30s"` (at most one of
    /// them; none means `all`). Other keys are not the model's and are ignored.
    pub fn from_options(options: &toml::Table) -> Result<DiscardModel, PowerError> {
        let keep = options.get("keep_fraction");
        let writeback = options.get("writeback_after");
        let discard = options.get("discard");
        let given = [keep.is_some(), writeback.is_some(), discard.is_some()].iter().filter(|b| **b).count();
        if given > 1 {
            return Err(PowerError::BadModel(
                "more than one of discard, keep_fraction, writeback_after is set".to_string(),
            ));
        }
        if let Some(v) = discard {
            return match v.as_str() {
                Some("all") => Ok(DiscardModel::All),
                _ => Err(PowerError::BadModel(format!("discard = {v} is not \"all\""))),
            };
        }
        if let Some(v) = keep {
            let f = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
            return match f {
                Some(f) if (0.0..=1.0).contains(&f) => Ok(DiscardModel::KeepFraction(f)),
                _ => Err(PowerError::BadModel(format!("keep_fraction = {v} is not a number in 0.0..=1.0"))),
            };
        }
        if let Some(v) = writeback {
            let s = v.as_str().ok_or_else(|| PowerError::BadModel(format!("writeback_after = {v} is not a string")))?;
            return jetsam_core::duration::parse_duration(s)
                .map(DiscardModel::WritebackAfter)
                .map_err(|e| PowerError::BadModel(format!("writeback_after = {s:?}: {e}")));
        }
        Ok(DiscardModel::All)
    }
}

/// How the io-error fault answers the node's data-file syscalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoErrorMode {
    /// fsync/fdatasync (and sync/syncfs) fail with EIO.
    Eio,
    /// write-family calls and fallocate fail with ENOSPC.
    Enospc,
    /// Both of the above.
    Both,
}

impl IoErrorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IoErrorMode::Eio => "eio",
            IoErrorMode::Enospc => "enospc",
            IoErrorMode::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<IoErrorMode> {
        match s.trim() {
            "eio" => Some(IoErrorMode::Eio),
            "enospc" => Some(IoErrorMode::Enospc),
            "both" => Some(IoErrorMode::Both),
            _ => None,
        }
    }

    pub fn fails_sync(self) -> bool {
        matches!(self, IoErrorMode::Eio | IoErrorMode::Both)
    }

    pub fn fails_write(self) -> bool {
        matches!(self, IoErrorMode::Enospc | IoErrorMode::Both)
    }
}

/// The processes of `S/tracees` that are still the ones the tracer saw
/// (same pid and start time), so a reused pid is never waited for.
pub fn live_tracees(state_dir: &Path) -> Vec<u32> {
    let Ok(text) = fs::read_to_string(state_dir.join(TRACEES_FILE)) else { return Vec::new() };
    text.lines()
        .filter_map(|l| {
            let (pid, start) = l.split_once(' ')?;
            let (pid, start) = (pid.parse::<u32>().ok()?, start.parse::<u64>().ok()?);
            (crate::process::start_time(pid) == Some(start)).then_some(pid)
        })
        .collect()
}

/// Turns the io-error fault on (`Some`) or off (`None`) for the tracer on
/// this state dir. Takes effect at the node's next trapped data-file syscall;
/// works whether or not a tracer is running (it persists in the state dir).
pub fn set_io_error(state_dir: &Path, mode: Option<IoErrorMode>) -> Result<(), PowerError> {
    match mode {
        Some(mode) => write_whole(state_dir, IO_ERROR_FILE, mode.as_str()),
        None => remove_if_there(&state_dir.join(IO_ERROR_FILE)),
    }
}

/// Writes `S/<name>` whole: a temp file renamed into place, so a reader
/// (the tracer, or the controller) never sees half of it.
pub(crate) fn write_whole(state_dir: &Path, name: &str, text: &str) -> Result<(), PowerError> {
    fs::create_dir_all(state_dir).map_err(|e| PowerError::io("create the state dir", state_dir, e))?;
    let tmp = state_dir.join(format!("{name}.tmp"));
    let path = state_dir.join(name);
    fs::write(&tmp, text).map_err(|e| PowerError::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| PowerError::io("rename into place", &path, e))
}

/// Removes a state file; one that is not there is fine.
pub(crate) fn remove_if_there(path: &Path) -> Result<(), PowerError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PowerError::io("remove", path, e)),
    }
}

/// Reads the io-error mode a state dir holds (None when off).
pub fn read_io_error(state_dir: &Path) -> Option<IoErrorMode> {
    fs::read_to_string(state_dir.join(IO_ERROR_FILE)).ok().and_then(|s| IoErrorMode::parse(&s))
}

/// Finds `jetsam-tracer`: `explicit`, else `$JETSAM_TRACER_BIN`, else beside
/// the current executable, else in its parent dir (test binaries live in
/// target/<profile>/deps).
pub fn find_tracer_binary(explicit: Option<&Path>) -> Result<PathBuf, PowerError> {
    let mut looked = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    } else if let Some(p) = std::env::var_os(TRACER_BIN_ENV) {
        candidates.push(PathBuf::from(p));
    } else if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join(TRACER_BIN_NAME));
        if let Some(up) = dir.parent() {
            candidates.push(up.join(TRACER_BIN_NAME));
        }
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        looked.push(c.display().to_string());
    }
    if looked.is_empty() {
        looked.push("nothing: no current_exe".to_string());
    }
    Err(PowerError::TracerMissing { looked: looked.join(", ") })
}

/// The arguments (after the tracer binary) that run `program args` under the
/// tracer: `run --data-dir D --state-dir S -- PROGRAM ARGS...`.
pub fn tracer_args(data_dir: &Path, state_dir: &Path, program: &Path, args: &[String]) -> Vec<String> {
    let mut v = vec![
        "run".to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
        "--state-dir".to_string(),
        state_dir.display().to_string(),
        "--".to_string(),
        program.display().to_string(),
    ];
    v.extend(args.iter().cloned());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().expect("valid toml")
    }

    #[test]
    fn discard_model_from_options() {
        assert_eq!(DiscardModel::from_options(&table("")).unwrap(), DiscardModel::All);
        assert_eq!(DiscardModel::from_options(&table("discard = \"all\"")).unwrap(), DiscardModel::All);
        assert_eq!(DiscardModel::from_options(&table("keep_fraction = 0.3")).unwrap(), DiscardModel::KeepFraction(0.3));
        assert_eq!(
            DiscardModel::from_options(&table("writeback_after = \"30s\"")).unwrap(),
            DiscardModel::WritebackAfter(Duration::from_secs(30))
        );
        for bad in [
            "keep_fraction = 1.5",
            "discard = \"some\"",
            "writeback_after = 3",
            "keep_fraction = 0.1\ndiscard = \"all\"",
        ] {
            let e = DiscardModel::from_options(&table(bad)).unwrap_err();
            assert_eq!(e.exit_code(), jetsam_core::exit::BAD_INPUT, "{bad}");
        }
        let json = serde_json::to_string(&DiscardModel::WritebackAfter(Duration::from_secs(30))).unwrap();
        assert_eq!(json, r#"{"writeback_after":"30s"}"#);
    }

    #[test]
    fn tracer_args_shape() {
        let a = tracer_args(Path::new("/d"), Path::new("/s"), Path::new("/bin/x"), &["-v".to_string()]);
        assert_eq!(a, ["run", "--data-dir", "/d", "--state-dir", "/s", "--", "/bin/x", "-v"]);
    }

    #[test]
    fn io_error_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_io_error(dir.path()), None);
        set_io_error(dir.path(), Some(IoErrorMode::Both)).unwrap();
        assert_eq!(read_io_error(dir.path()), Some(IoErrorMode::Both));
        set_io_error(dir.path(), None).unwrap();
        set_io_error(dir.path(), None).unwrap();
        assert_eq!(read_io_error(dir.path()), None);
    }

    #[test]
    fn missing_tracer_says_how_to_build() {
        let e = find_tracer_binary(Some(Path::new("/nonexistent/jetsam-tracer"))).unwrap_err();
        assert!(e.to_string().contains("cargo build --workspace --bins"), "{e}");
    }
}
