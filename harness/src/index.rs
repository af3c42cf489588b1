//! `results/index.csv` and `results/<scenario>/latest`: every run that
//! reaches a verdict in the project's results folder ([`DEFAULT_ROOT`]:
//! `jetsam run` and `jetsam suite` without `--out`) appends one row to the
//! index (under an exclusive `flock`, one `write` per row, so parallel runs
//! never interleave or lose a row) and points its scenario's `latest`
//! symlink at its folder (a new link renamed over the old one, so a reader
//! never sees it missing). Runs elsewhere (`--out`, a suite's, explore's or
//! shrink's own folder, a matrix) are where their caller put them, listed
//! by that caller, and not indexed: a `latest` link beside their run
//! folders would be one more folder to whoever lists them.

use jetsam_core::report::Report;
use jetsam_core::scenario::Scenario;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The results folder that is indexed (relative to the working directory,
/// as `jetsam run` and `jetsam suite` default to it).
pub const DEFAULT_ROOT: &str = "results";
/// The index's file name in the results folder.
pub const INDEX_FILE: &str = "index.csv";
/// The symlink in `results/<scenario>/` to the newest run folder.
pub const LATEST_LINK: &str = "latest";
/// Bound on waiting for another run to finish its append.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
const LOCK_POLL: Duration = Duration::from_millis(5);

/// The index's columns, in order (docs/formats.md "results/index.csv").
pub const COLUMNS: [&str; 12] =
    ["time", "scenario", "seed", "target", "version", "mode", "sync", "verdict", "acked", "lost", "windows", "folder"];

/// One row of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    /// UTC, `YYYYmmddTHHMMSSZ`, when the run ended.
    pub time: String,
    pub scenario: String,
    pub seed: u64,
    pub target: String,
    /// `target.version` (NATS) or `target.bug` (reference node), else empty.
    pub version: String,
    pub mode: String,
    /// `stream.sync`, empty when the target's default.
    pub sync: String,
    pub verdict: String,
    pub acked: u64,
    pub lost: u64,
    pub windows: u64,
    /// The run folder, relative to the results folder.
    pub folder: String,
}

impl IndexRow {
    pub fn new(scenario: &Scenario, seed: u64, report: &Report, folder: String) -> IndexRow {
        IndexRow {
            time: crate::run::utc_stamp(),
            scenario: scenario.name.clone(),
            seed,
            target: scenario.target.kind.clone(),
            version: scenario.target.version.clone().or_else(|| scenario.target.bug.clone()).unwrap_or_default(),
            mode: report.mode.to_string(),
            sync: scenario.stream.sync.clone().unwrap_or_default(),
            verdict: report.verdict.to_string(),
            acked: report.acked,
            lost: report.lost,
            windows: report.loss_windows.len() as u64,
            folder,
        }
    }

    fn fields(&self) -> [String; 12] {
        [
            self.time.clone(),
            self.scenario.clone(),
            self.seed.to_string(),
            self.target.clone(),
            self.version.clone(),
            self.mode.clone(),
            self.sync.clone(),
            self.verdict.clone(),
            self.acked.to_string(),
            self.lost.to_string(),
            self.windows.to_string(),
            self.folder.clone(),
        ]
    }
}

/// The index or the link could not be written (environment, exit 4; a run
/// still keeps its verdict).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("failed to append to {}: {source}; check that the results folder is writable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to lock {} within {waited:?}: another run holds it; retry, or look for a stuck jetsam", path.display())]
    Locked { path: PathBuf, waited: Duration },
}

fn csv_line(fields: &[String]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(fields).expect("a CSV record into memory cannot fail");
    w.into_inner().expect("flushing into memory cannot fail")
}

/// Appends `row` to `root/index.csv` (with the header when the file is new).
pub fn append(root: &Path, row: &IndexRow) -> Result<(), IndexError> {
    let path = root.join(INDEX_FILE);
    let io = |source| IndexError::Io { path: path.clone(), source };
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
    let start = Instant::now();
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io(e));
        }
        if start.elapsed() > LOCK_TIMEOUT {
            return Err(IndexError::Locked { path: path.clone(), waited: LOCK_TIMEOUT });
        }
        std::thread::sleep(LOCK_POLL);
    }
    // Under the lock: whoever finds the file empty writes the header.
    let mut bytes = Vec::new();
    if file.metadata().map_err(io)?.len() == 0 {
        bytes = csv_line(&COLUMNS.map(String::from));
    }
    bytes.extend(csv_line(&row.fields()));
    file.write_all(&bytes).map_err(io)?;
    // The lock goes with the descriptor.
    Ok(())
}

/// Points `scenario_dir/latest` at `run_dir` (a child of it).
pub fn point_latest(scenario_dir: &Path, run_dir: &Path) -> Result<(), IndexError> {
    let leaf = run_dir.file_name().expect("a run folder has a name");
    let link = scenario_dir.join(LATEST_LINK);
    let tmp = scenario_dir.join(format!(".{LATEST_LINK}.{}", std::process::id()));
    let io = |source| IndexError::Io { path: link.clone(), source };
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(leaf, &tmp).map_err(io)?;
    std::fs::rename(&tmp, &link).map_err(io)
}

/// Both, for a run folder `root/<scenario>/<leaf>`.
pub fn record(root: &Path, run_dir: &Path, scenario: &Scenario, seed: u64, report: &Report) -> Result<(), IndexError> {
    let folder = run_dir.strip_prefix(root).unwrap_or(run_dir).display().to_string();
    append(root, &IndexRow::new(scenario, seed, report, folder))?;
    if let Some(scenario_dir) = run_dir.parent() {
        point_latest(scenario_dir, run_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> IndexRow {
        IndexRow {
            time: "20261207T033000Z".into(),
            scenario: "a, \"quoted\" name".into(),
            seed: i,
            target: "node".into(),
            version: String::new(),
            mode: "strong".into(),
            sync: "200ms".into(),
            verdict: "pass".into(),
            acked: 1000 + i,
            lost: 0,
            windows: 0,
            folder: format!("a/{i}"),
        }
    }

    #[test]
    fn parallel_appends_keep_every_row_whole_and_one_header() {
        let dir = tempfile::tempdir().unwrap();
        let (threads, rows) = (8u64, 50u64);
        std::thread::scope(|s| {
            for t in 0..threads {
                let root = dir.path();
                s.spawn(move || {
                    for i in 0..rows {
                        append(root, &row(t * rows + i)).unwrap();
                    }
                });
            }
        });
        let mut reader = csv::Reader::from_path(dir.path().join(INDEX_FILE)).unwrap();
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS.to_vec());
        let mut seeds: Vec<u64> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                assert_eq!(r.len(), COLUMNS.len());
                assert_eq!(&r[1], "a, \"quoted\" name", "quoting survives");
                let seed: u64 = r[2].parse().unwrap();
                assert_eq!(r[8].parse::<u64>().unwrap(), 1000 + seed, "fields of one row stay together");
                seed
            })
            .collect();
        seeds.sort_unstable();
        assert_eq!(seeds, (0..threads * rows).collect::<Vec<_>>());
    }

    #[test]
    fn latest_follows_the_newest_run() {
        let dir = tempfile::tempdir().unwrap();
        for leaf in ["20261207T000000Z-1", "20261207T000001Z-2"] {
            let run = dir.path().join(leaf);
            std::fs::create_dir(&run).unwrap();
            point_latest(dir.path(), &run).unwrap();
            let target = std::fs::read_link(dir.path().join(LATEST_LINK)).unwrap();
            assert_eq!(target, Path::new(leaf));
            assert!(dir.path().join(LATEST_LINK).is_dir());
        }
    }
}
