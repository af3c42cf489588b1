//! `jetsam compact RUN_DIR`: rewrites a run folder's `history.jsonl` and
//! every `recovered/<view>.jsonl` (nodes and `cluster.jsonl`) in the compact
//! form, `history.bin` and `recovered/<view>.bin` (docs/formats.md "Compact
//! files"), which `jetsam check`, the durability audit and `jetsam report`
//! read as they read the JSON lines.
//!
//! Every line is validated as `jetsam check` validates it; a bad line is an
//! error naming the file and the line, and the folder is left exactly as it
//! was. Each compact file is written under a temporary name in its folder
//! and synced; then it is compared with its JSON lines record by record
//! (every field and text), and only when all of them match are they renamed
//! into place, the folders synced, and the JSON lines removed (and the
//! folders synced again). A crash therefore leaves the JSON lines, or both
//! forms of a file (which `jetsam check` refuses): run `jetsam compact`
//! again, and it finishes such a file when its `.bin` holds exactly what its
//! `.jsonl` holds, or says how they differ and changes nothing. Exit 0 when
//! done (or already compact), 2 on bad input, 4 when a file cannot be
//! written. Every other file of the folder stays as it is.

use crate::compact_file::{EncodeError, compare_history, compare_view, encode_history, encode_view};
use jetsam_checkers::History;
use jetsam_checkers::load::{
    COMPACT_SUFFIX, HISTORY_COMPACT_FILE, HISTORY_FILE, RECOVERED_DIR, load_history, load_history_compact,
    load_recovered,
};
use jetsam_core::exit;
use jetsam_core::jsonl::LoadError;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// The run folder: history.jsonl and recovered/<view>.jsonl become
    /// history.bin and recovered/<view>.bin (docs/formats.md "Compact files").
    pub run_dir: PathBuf,
}

/// Why a folder was not compacted.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("failed to compact {}: no such folder; pass a run folder such as results/<scenario>/<time>-<seed>", dir.display())]
    NotAFolder { dir: PathBuf },
    #[error(
        "failed to compact {}: it holds neither {HISTORY_FILE} nor {HISTORY_COMPACT_FILE}; pass a run folder that `jetsam run` wrote",
        dir.display()
    )]
    NoHistory { dir: PathBuf },
    #[error("failed to compact {}: {source}; nothing was changed: fix that line, as `jetsam check` would need too", dir.display())]
    Invalid { dir: PathBuf, source: LoadError },
    #[error(
        "failed to compact {}: both {name}.jsonl and {name}{COMPACT_SUFFIX} exist and differ ({why}); nothing was changed: \
         remove the one that is wrong (a folder holds one form of a file), then run `jetsam compact` again",
        dir.display()
    )]
    Differ { dir: PathBuf, name: String, why: String },
    #[error(
        "failed to compact {}: {name}{COMPACT_SUFFIX} as written does not read back as {name}.jsonl ({why}); nothing was \
         changed: this is a bug in jetsam, please report it with that file",
        dir.display()
    )]
    Proof { dir: PathBuf, name: String, why: String },
    #[error(
        "failed to {what} {}: {source}; check that the run folder is writable and has room (each .jsonl is removed only \
         once every .bin is in place; run `jetsam compact` again to finish)",
        path.display()
    )]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CompactError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CompactError::Proof { .. } | CompactError::Io { .. } => exit::ENVIRONMENT,
            _ => exit::BAD_INPUT,
        }
    }
}

/// Which forms of a file the folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forms {
    Lines,
    /// Both: a compaction stopped between renaming the `.bin` into place
    /// and removing the `.jsonl`.
    Both,
    Compact,
}

/// One file to compact: the history or a recovered view.
#[derive(Debug, Clone)]
struct Pair {
    /// Its path in the folder without the suffix: `history`, `recovered/n1`.
    name: String,
    lines: PathBuf,
    compact: PathBuf,
    /// Where the `.bin` is written before it is renamed into place.
    tmp: PathBuf,
    forms: Forms,
    /// The size of the `.jsonl`.
    before: u64,
}

impl Pair {
    fn new(dir: &Path, folder: &str, stem: &str) -> Option<Pair> {
        let base = if folder.is_empty() { dir.to_path_buf() } else { dir.join(folder) };
        let lines = base.join(format!("{stem}.jsonl"));
        let compact = base.join(format!("{stem}{COMPACT_SUFFIX}"));
        let forms = match (lines.is_file(), compact.is_file()) {
            (true, false) => Forms::Lines,
            (true, true) => Forms::Both,
            (false, true) => Forms::Compact,
            (false, false) => return None,
        };
        let name = if folder.is_empty() { stem.to_string() } else { format!("{folder}/{stem}") };
        let tmp = base.join(format!(".{stem}{COMPACT_SUFFIX}.tmp"));
        let before = size_of(&lines);
        Some(Pair { name, lines, compact, tmp, forms, before })
    }
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The history and every recovered view of `dir`, views in name order.
fn plan(dir: &Path) -> Result<(Pair, Vec<Pair>), CompactError> {
    if !dir.is_dir() {
        return Err(CompactError::NotAFolder { dir: dir.to_path_buf() });
    }
    let history = Pair::new(dir, "", "history").ok_or_else(|| CompactError::NoHistory { dir: dir.to_path_buf() })?;
    let recovered = dir.join(RECOVERED_DIR);
    let mut stems = std::collections::BTreeSet::new();
    if recovered.is_dir() {
        let list = |source| CompactError::Io { what: "list", path: recovered.clone(), source };
        for entry in std::fs::read_dir(&recovered).map_err(list)? {
            let name = entry.map_err(list)?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".jsonl").or_else(|| name.strip_suffix(COMPACT_SUFFIX)) {
                stems.insert(stem.to_string());
            }
        }
    }
    let views = stems.iter().filter_map(|stem| Pair::new(dir, RECOVERED_DIR, stem)).collect();
    Ok((history, views))
}

/// Validates the history (encoding it when only its JSON lines exist) and
/// returns it, for the views to be validated against.
fn history(dir: &Path, pair: &Pair) -> Result<History, CompactError> {
    let invalid = |source| CompactError::Invalid { dir: dir.to_path_buf(), source };
    match pair.forms {
        Forms::Lines => encode_history(&pair.lines, &pair.tmp).map_err(|e| encode_error(dir, pair, e)),
        Forms::Both => load_history(&pair.lines).map_err(invalid),
        Forms::Compact => load_history_compact(&pair.compact).map_err(invalid),
    }
}

fn encode_error(dir: &Path, pair: &Pair, e: EncodeError) -> CompactError {
    match e {
        EncodeError::Line(source) => CompactError::Invalid { dir: dir.to_path_buf(), source },
        EncodeError::Write(source) => CompactError::Io { what: "write", path: pair.tmp.clone(), source },
    }
}

/// One file after the history: validated (and encoded when only its JSON
/// lines exist), then its compact form compared with its JSON lines.
fn view_or_history(dir: &Path, pair: &Pair, history: &History, is_history: bool) -> Result<(), CompactError> {
    let compact = match pair.forms {
        Forms::Compact => return Ok(()),
        Forms::Lines if !is_history => {
            encode_view(&pair.lines, &pair.tmp, history).map_err(|e| encode_error(dir, pair, e))?;
            &pair.tmp
        }
        Forms::Lines => &pair.tmp,
        Forms::Both if !is_history => {
            load_recovered(&pair.lines, history)
                .map_err(|source| CompactError::Invalid { dir: dir.to_path_buf(), source })?;
            &pair.compact
        }
        Forms::Both => &pair.compact,
    };
    let same = if is_history { compare_history(&pair.lines, compact) } else { compare_view(&pair.lines, compact) };
    same.map_err(|why| {
        let (dir, name) = (dir.to_path_buf(), pair.name.clone());
        if pair.forms == Forms::Both {
            CompactError::Differ { dir, name, why }
        } else {
            CompactError::Proof { dir, name, why }
        }
    })
}

/// Validates, encodes and proves every file; the views (and the history's
/// comparison) one thread each. The first error in file order wins.
fn prepare(dir: &Path, history_pair: &Pair, views: &[Pair]) -> Result<(), CompactError> {
    let history = history(dir, history_pair)?;
    let history = &history;
    let results: Vec<Result<(), CompactError>> = std::thread::scope(|s| {
        let jobs: Vec<_> = std::iter::once((history_pair, true))
            .chain(views.iter().map(|v| (v, false)))
            .map(|(pair, is_history)| s.spawn(move || view_or_history(dir, pair, history, is_history)))
            .collect();
        jobs.into_iter().map(|j| j.join().expect("a compaction thread does not panic")).collect()
    });
    results.into_iter().collect()
}

fn sync_dir(path: &Path) -> Result<(), CompactError> {
    std::fs::File::open(path).and_then(|d| d.sync_all()).map_err(|source| CompactError::Io {
        what: "sync",
        path: path.to_path_buf(),
        source,
    })
}

/// Renames every new `.bin` into place, syncs the folders, then removes
/// every `.jsonl` that has its `.bin` and syncs the folders again.
fn commit(dir: &Path, pairs: &[&Pair]) -> Result<(), CompactError> {
    let folders = [dir.to_path_buf(), dir.join(RECOVERED_DIR)];
    let sync_folders = || folders.iter().filter(|f| f.is_dir()).try_for_each(|f| sync_dir(f));
    for pair in pairs.iter().filter(|p| p.forms == Forms::Lines) {
        std::fs::rename(&pair.tmp, &pair.compact).map_err(|source| CompactError::Io {
            what: "rename",
            path: pair.tmp.clone(),
            source,
        })?;
    }
    sync_folders()?;
    for pair in pairs.iter().filter(|p| p.forms != Forms::Compact) {
        std::fs::remove_file(&pair.lines).map_err(|source| CompactError::Io {
            what: "remove",
            path: pair.lines.clone(),
            source,
        })?;
    }
    sync_folders()
}

/// Sizes as people read them.
fn size(bytes: u64) -> String {
    match bytes {
        b if b < 10_000 => format!("{b} B"),
        b if b < 10_000_000 => format!("{:.1} KB", b as f64 / 1e3),
        b if b < 10_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.2} GB", b as f64 / 1e9),
    }
}

fn ratio(before: u64, after: u64) -> String {
    if after == 0 { "-".into() } else { format!("{:.1}x smaller", before as f64 / after as f64) }
}

/// What was done, one line per file and the total.
fn summary(dir: &Path, rows: &[(String, u64, u64, bool)], seconds: f64) -> String {
    let mut out = format!("compacted {} in {seconds:.1} s:\n", dir.display());
    let width = rows.iter().map(|r| r.0.len() + 6).max().unwrap_or(0);
    for (name, before, after, finished) in rows {
        let file = format!("{name}.jsonl");
        let note = if *finished { "  (its .bin was already there: finished)" } else { "" };
        out.push_str(&format!(
            "  {file:<width$} {:>10} -> {:>10}  {}{note}\n",
            size(*before),
            size(*after),
            ratio(*before, *after)
        ));
    }
    let (before, after) = rows.iter().fold((0, 0), |(b, a), r| (b + r.1, a + r.2));
    out.push_str(&format!(
        "  {:<width$} {:>10} -> {:>10}  {}\n",
        "total",
        size(before),
        size(after),
        ratio(before, after)
    ));
    out.push_str("every line was valid and every .bin reads back as its .jsonl; the .jsonl files are removed\n");
    out
}

/// Compacts `dir`; returns what to print.
pub fn compact(dir: &Path) -> Result<String, CompactError> {
    let started = Instant::now();
    let (history, views) = plan(dir)?;
    let pairs: Vec<&Pair> = std::iter::once(&history).chain(&views).collect();
    if pairs.iter().all(|p| p.forms == Forms::Compact) {
        return Ok(format!(
            "{} is already compact ({HISTORY_COMPACT_FILE} and {} recovered view(s)): nothing to do\n",
            dir.display(),
            views.len()
        ));
    }
    let prepared = prepare(dir, &history, &views);
    if let Err(e) = prepared.and_then(|()| commit(dir, &pairs)) {
        for pair in pairs.iter().filter(|p| p.forms == Forms::Lines) {
            let _ = std::fs::remove_file(&pair.tmp);
        }
        return Err(e);
    }
    let rows: Vec<(String, u64, u64, bool)> = pairs
        .iter()
        .filter(|p| p.forms != Forms::Compact)
        .map(|p| (p.name.clone(), p.before, size_of(&p.compact), p.forms == Forms::Both))
        .collect();
    Ok(summary(dir, &rows, started.elapsed().as_secs_f64()))
}

pub fn execute(args: CompactArgs) -> i32 {
    match compact(&args.run_dir) {
        Ok(text) => {
            print!("{text}");
            exit::PASS
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
