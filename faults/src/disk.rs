//! Disk faults: bit flips and truncation of a stopped node's data files.
//!
//! # What it does
//!
//! [`bitflip`] picks ONE file among the regular, non-empty files of the data
//! dir that match the globs, and flips `bits_per_file` distinct bits in it
//! (distinct (offset, bit) positions, at most every bit of the file).
//! [`truncate`] picks ONE such file and cuts a Zipf-sized tail off it (small
//! tails are likely, the whole file is possible). One file per call keeps each
//! fault attributable to one file in `events.jsonl`; call again for more.
//! Every change is returned as a [`Corruption`] with the exact bytes, ready to
//! be written as an event ([`Corruption::to_event`]). [`pick_fixed_minority`]
//! chooses the nodes that may be corrupted during a whole run (as Jepsen's
//! NATS suite does: a fixed minority, so a majority always holds good copies).
//!
//! Globs are relative to the data dir, with `/` as separator; `*` does not
//! cross a `/` and `**` spans directories, and a glob without a `/` matches a
//! file name at any depth (as in `.gitignore`): `*.blk` matches
//! `streams/s/msgs/1.blk`, `msgs/*.blk` matches only `msgs/1.blk` at the top.
//! Candidate files are sorted by relative path before any choice, and every
//! choice comes from `rng`, so a seed replays exactly on the same files.
//!
//! # What it does not do
//!
//! It does not stop the node: the caller guarantees the node is down (a
//! running node could overwrite the change or hold stale pages). It does not
//! follow symbolic links, and never touches anything outside the data dir.
//! It does not model silent corruption *during* a run (the node reading a
//! flipped bit it wrote itself); only corruption at rest, seen on restart.
//!
//! # Example
//!
//! ```no_run
//! use jetsam_faults::disk::{bitflip, pick_fixed_minority};
//! use rand::SeedableRng;
//! # fn demo(data_dir: &std::path::Path, t_ns: u64) -> Result<(), jetsam_faults::disk::DiskError> {
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
//! let nodes: Vec<String> = ["n1", "n2", "n3", "n4", "n5"].map(String::from).to_vec();
//! let corruptible = pick_fixed_minority(&nodes, &mut rng); // once per run
//! // ... node corruptible[0] is stopped ...
//! for c in bitflip(data_dir, &["*.blk".to_string()], 2, &mut rng)? {
//!     let event = c.to_event(t_ns, &corruptible[0]); // append to events.jsonl
//! #   let _ = event;
//! }
//! # Ok(()) }
//! ```

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use jetsam_core::event::{Event, EventKind};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Deepest directory nesting walked under a data dir (a bound against
/// pathological trees; real stores nest a handful of levels).
const MAX_WALK_DEPTH: usize = 32;

/// One change made to a data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Corruption {
    /// One bit flipped: `before` and `after` are the whole byte's values.
    Bitflip {
        /// Relative to the data dir, `/`-separated.
        file: String,
        offset: u64,
        /// 0 = least significant bit.
        bit: u8,
        before: u8,
        after: u8,
    },
    /// The file cut from `old_len` to `new_len` bytes.
    Truncate {
        /// Relative to the data dir, `/`-separated.
        file: String,
        old_len: u64,
        new_len: u64,
    },
}

impl Corruption {
    /// The relative path of the changed file.
    pub fn file(&self) -> &str {
        match self {
            Corruption::Bitflip { file, .. } | Corruption::Truncate { file, .. } => file,
        }
    }

    /// `bitflip` or `truncate`.
    pub fn kind(&self) -> EventKind {
        match self {
            Corruption::Bitflip { .. } => EventKind::Bitflip,
            Corruption::Truncate { .. } => EventKind::Truncate,
        }
    }

    /// The fields as event details (`file`, `offset`, `bit`, `before`, `after`
    /// or `file`, `old_len`, `new_len`).
    pub fn details(&self) -> BTreeMap<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
            other => unreachable!("a Corruption serializes to a JSON object, got {other:?}"),
        }
    }

    /// The `events.jsonl` line for this change on `node`.
    pub fn to_event(&self, t_ns: u64, node: &str) -> Event {
        let mut event = Event::new(t_ns, self.kind(), vec![node.to_string()]);
        event.details = self.details();
        event
    }
}

/// A disk fault that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The scenario's glob is malformed (user error, exit code 2).
    #[error(
        "failed to parse file glob {glob:?}: {message}; fix the glob in the scenario (e.g. \"*.blk\", \"msgs/**\")"
    )]
    BadGlob { glob: String, message: String },
    /// No file to corrupt (user error, exit code 2: the globs do not fit this target's files).
    #[error(
        "failed to find a non-empty regular file matching {globs:?} under {data_dir} ({matched_empty} empty files matched); check the globs against the node's data dir"
    )]
    NoMatch { globs: Vec<String>, data_dir: PathBuf, matched_empty: usize },
    /// Reading or writing the data dir failed (environment error, exit code 4).
    #[error(
        "failed to {action} {path}: {source}; check that the node is stopped and the path is readable and writable"
    )]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "failed to walk {data_dir}: directories nest deeper than {MAX_WALK_DEPTH} levels at {path}; narrow the data dir"
    )]
    TooDeep { data_dir: PathBuf, path: PathBuf },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DiskError + 'a {
    move |source| DiskError::Io { action, path: path.to_path_buf(), source }
}

fn build_globs(globs: &[String]) -> Result<GlobSet, DiskError> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        // A glob without a separator matches a file name at any depth.
        let pattern = if glob.contains('/') { glob.clone() } else { format!("**/{glob}") };
        let compiled = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| DiskError::BadGlob { glob: glob.clone(), message: e.kind().to_string() })?;
        set.add(compiled);
    }
    set.build().map_err(|e| DiskError::BadGlob { glob: globs.join(", "), message: e.to_string() })
}

/// A candidate file: relative path and length.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rel: String,
    len: u64,
}

/// Non-empty regular files under `data_dir` matching `globs`, sorted by
/// relative path; an error naming the globs and the dir when there is none.
fn candidates(data_dir: &Path, globs: &[String]) -> Result<Vec<Candidate>, DiskError> {
    if globs.is_empty() {
        return Err(DiskError::BadGlob { glob: String::new(), message: "no globs given".into() });
    }
    let set = build_globs(globs)?;
    let mut found = BTreeSet::new();
    let mut matched_empty = 0;
    // (directory, relative prefix, depth)
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(data_dir.to_path_buf(), String::new(), 0)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        if depth > MAX_WALK_DEPTH {
            return Err(DiskError::TooDeep { data_dir: data_dir.to_path_buf(), path: dir });
        }
        for entry in std::fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!(path = %path.display(), "skipping a file name that is not UTF-8");
                continue;
            };
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            // file_type() does not follow symlinks: links are neither files nor dirs here.
            let file_type = entry.file_type().map_err(io_err("stat", &path))?;
            if file_type.is_dir() {
                stack.push((path, rel, depth + 1));
            } else if file_type.is_file() && set.is_match(&rel) {
                let len = entry.metadata().map_err(io_err("stat", &path))?.len();
                if len == 0 {
                    matched_empty += 1;
                } else {
                    found.insert(Candidate { rel, len });
                }
            }
        }
    }
    if found.is_empty() {
        return Err(DiskError::NoMatch { globs: globs.to_vec(), data_dir: data_dir.to_path_buf(), matched_empty });
    }
    Ok(found.into_iter().collect())
}

/// Flips `bits_per_file` distinct bits (capped at the file's bit count) in
/// one seeded file among the non-empty regular files matching `globs` under
/// `data_dir`. Returns one [`Corruption::Bitflip`] per flipped bit, sorted by
/// (offset, bit); two flips in one byte chain (the second's `before` is the
/// first's `after`). The file is fsynced. `bits_per_file` 0 changes nothing
/// but still checks that a file matches.
pub fn bitflip(
    data_dir: &Path,
    globs: &[String],
    bits_per_file: u32,
    rng: &mut impl Rng,
) -> Result<Vec<Corruption>, DiskError> {
    let files = candidates(data_dir, globs)?;
    let chosen = files.choose(rng).expect("candidates() never returns an empty list");
    let total_bits = chosen.len.saturating_mul(8);
    let want = u64::from(bits_per_file).min(total_bits);
    let mut positions = BTreeSet::new();
    if want * 2 > total_bits {
        // Dense: sample without replacement from every position (files here are tiny).
        let mut all: Vec<u64> = (0..total_bits).collect();
        all.shuffle(rng);
        positions.extend(all.into_iter().take(want as usize));
    } else {
        // Sparse: rejection sampling ends quickly because at most half the positions are taken.
        while (positions.len() as u64) < want {
            positions.insert(rng.gen_range(0..total_bits));
        }
    }
    let path = data_dir.join(&chosen.rel);
    let mut file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err("open", &path))?;
    let mut out = Vec::with_capacity(positions.len());
    for position in positions {
        let offset = position / 8;
        let bit = (position % 8) as u8;
        let mut byte = [0u8; 1];
        file.seek(SeekFrom::Start(offset)).map_err(io_err("seek in", &path))?;
        file.read_exact(&mut byte).map_err(io_err("read", &path))?;
        let before = byte[0];
        let after = before ^ (1 << bit);
        file.seek(SeekFrom::Start(offset)).map_err(io_err("seek in", &path))?;
        file.write_all(&[after]).map_err(io_err("write", &path))?;
        out.push(Corruption::Bitflip { file: chosen.rel.clone(), offset, bit, before, after });
    }
    file.sync_all().map_err(io_err("fsync", &path))?;
    Ok(out)
}

/// A tail length in `1..=len`, Zipf-like (P(k) ≈ 1/k): `floor((len + 1)^u)`
/// for u uniform in [0, 1), a discretised log-uniform draw, so a tail of k
/// bytes has probability ln((k + 1) / k) / ln(len + 1).
pub fn zipf_tail_len(len: u64, rng: &mut impl Rng) -> u64 {
    assert!(len > 0, "a tail of an empty file has no length");
    let u: f64 = rng.r#gen();
    let k = ((len as f64 + 1.0).powf(u)).floor() as u64;
    k.clamp(1, len)
}

/// Cuts a Zipf-sized tail ([`zipf_tail_len`]) off one seeded file among the
/// non-empty regular files matching `globs` under `data_dir`. Returns one
/// [`Corruption::Truncate`] (`new_len` < `old_len`). The file is fsynced.
pub fn truncate(data_dir: &Path, globs: &[String], rng: &mut impl Rng) -> Result<Vec<Corruption>, DiskError> {
    let files = candidates(data_dir, globs)?;
    let chosen = files.choose(rng).expect("candidates() never returns an empty list");
    let tail = zipf_tail_len(chosen.len, rng);
    let new_len = chosen.len - tail;
    let path = data_dir.join(&chosen.rel);
    let file = OpenOptions::new().write(true).open(&path).map_err(io_err("open", &path))?;
    file.set_len(new_len).map_err(io_err("truncate", &path))?;
    file.sync_all().map_err(io_err("fsync", &path))?;
    Ok(vec![Corruption::Truncate { file: chosen.rel.clone(), old_len: chosen.len, new_len }])
}

/// The nodes that disk faults may hit for a whole run: a seeded strict
/// minority of `(n - 1) / 2` nodes (1 of 3, 2 of 5; none of 1 or 2, where no
/// node can be corrupted without losing a majority of good copies), sorted.
pub fn pick_fixed_minority(nodes: &[String], rng: &mut impl Rng) -> Vec<String> {
    let mut sorted = nodes.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), nodes.len(), "node names must be unique: {nodes:?}");
    let count = (sorted.len().saturating_sub(1)) / 2;
    sorted.shuffle(rng);
    sorted.truncate(count);
    sorted.sort();
    sorted
}
