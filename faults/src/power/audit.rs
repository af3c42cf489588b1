//! The durability audit's raw record: with `S/audit-on` present when the
//! tracer starts, it appends to `S/audit.log` one line per write to a data
//! file (`w <t_ns> <dev>-<ino>`, at the call's entry) and one per successful
//! sync (`s <start_ns> <end_ns> <dev>-<ino>` for fsync/fdatasync of a file,
//! `s <start_ns> <end_ns> *` for syncfs/sync), times on CLOCK_REALTIME. The
//! harness turns it into `audit/<node>.log` on the run's clock and the
//! checker (`jetsam_checkers::audit`) says, for each acknowledged write,
//! whether a majority of replicas had synced what they wrote for it before
//! the ack. Lines are buffered and written at each sync's end (and every
//! [`FLUSH_LINES`]), so a tracer killed with its node loses at most the
//! writes since its last sync: those were never synced either.

use super::PowerError;
use jetsam_core::audit_log::AuditLine;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// `S/audit-on`: written by the harness before the node starts.
pub const AUDIT_ON_FILE: &str = "audit-on";
/// `S/audit.log`: the tracer's record.
pub const AUDIT_LOG_FILE: &str = "audit.log";
/// Lines buffered at most between writes.
pub const FLUSH_LINES: usize = 1024;

/// Turns the audit on for the tracer that starts next on this state dir.
pub fn enable(state_dir: &Path) -> Result<(), PowerError> {
    fs::create_dir_all(state_dir).map_err(|e| PowerError::io("create the state dir", state_dir, e))?;
    let path = state_dir.join(AUDIT_ON_FILE);
    fs::write(&path, "").map_err(|e| PowerError::io("write", &path, e))
}

/// The tracer's side: an append-only, buffered record.
pub struct AuditLog {
    out: BufWriter<File>,
    lines: usize,
}

impl AuditLog {
    /// `Some` when the audit is on for this state dir.
    pub fn open(state_dir: &Path) -> io::Result<Option<AuditLog>> {
        if !state_dir.join(AUDIT_ON_FILE).exists() {
            return Ok(None);
        }
        let file = OpenOptions::new().create(true).append(true).open(state_dir.join(AUDIT_LOG_FILE))?;
        Ok(Some(AuditLog { out: BufWriter::with_capacity(64 * 1024, file), lines: 0 }))
    }

    pub fn write(&mut self, t_ns: u64, dev: u64, ino: u64) {
        let file = format!("{dev}-{ino}");
        let _ = writeln!(self.out, "{}", AuditLine::Write { t_ns, file: &file });
        self.count();
    }

    /// A successful sync of one file (`Some((dev, ino))`) or of all (`None`).
    pub fn sync(&mut self, start_ns: u64, end_ns: u64, file: Option<(u64, u64)>) {
        let file = file.map(|(dev, ino)| format!("{dev}-{ino}"));
        let _ = writeln!(self.out, "{}", AuditLine::Sync { start_ns, end_ns, file: file.as_deref() });
        self.flush();
    }

    fn count(&mut self) {
        self.lines += 1;
        if self.lines >= FLUSH_LINES {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        self.lines = 0;
        if let Err(e) = self.out.flush() {
            eprintln!("jetsam-tracer: failed to write the audit log: {e}");
        }
    }
}

/// Copies `S/audit.log` to `out` with every time moved onto the run's clock
/// (`minus_ns` subtracted; earlier times become 0). Returns the lines copied.
pub fn export(state_dir: &Path, out: &Path, minus_ns: u64) -> Result<u64, PowerError> {
    let src = state_dir.join(AUDIT_LOG_FILE);
    let text = match fs::read_to_string(&src) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(PowerError::io("read", &src, e)),
    };
    let mut body = String::with_capacity(text.len());
    let mut n = 0;
    for line in text.lines().filter_map(AuditLine::parse) {
        body.push_str(&format!("{}\n", line.shifted(minus_ns)));
        n += 1;
    }
    fs::write(out, body).map_err(|e| PowerError::io("write", out, e))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_export_shifts_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        enable(dir.path()).unwrap();
        let mut log = AuditLog::open(dir.path()).unwrap().expect("on");
        log.write(1_000, 1, 2);
        log.sync(1_500, 2_000, Some((1, 2)));
        log.sync(2_500, 3_000, None);
        drop(log);
        let out = dir.path().join("n1.log");
        assert_eq!(export(dir.path(), &out, 900).unwrap(), 3);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text, "w 100 1-2\ns 600 1100 1-2\ns 1600 2100 *\n");
        let off = tempfile::tempdir().unwrap();
        assert!(AuditLog::open(off.path()).unwrap().is_none(), "off unless enabled");
    }
}
