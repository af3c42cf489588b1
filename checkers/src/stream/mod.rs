//! The streaming checker: the same decisions as [`crate::check`] in flat
//! memory (see docs/formats.md "Checker speed and memory") instead of
//! holding the history and the views: ~9 bits per write with three views
//! in mapped temporary files, trimmed from memory above a budget.
//!
//! Passes, each reading files front to back:
//! 1. the history ([`index`]): validated, indexed (2 bits per op), and
//!    spilled to a temporary folder as three streams: invokes in file
//!    order, acknowledgements in ack order, and acknowledgements sorted by
//!    sequence (an external merge sort, [`spill`]);
//! 2. the views, twice ([`views`]): first each on its own thread, counting
//!    how often it holds each op (2 bits per op per view); then all of them
//!    merged in sequence order with the sorted acknowledgements ([`merge`]):
//!    seq-mismatches, conflicts between replicas, the duplicates' sequences;
//! 3. the spilled streams again ([`finish`]): losses and loss windows in ack
//!    order, and the samples that are listed in invoke order.
//!
//! The report is the in-memory checker's, byte for byte (tests/stream_equality.rs);
//! which engine `jetsam check` uses is its `--engine` flag.

mod bits;
mod finish;
mod index;
mod mapped;
mod merge;
mod spill;
mod views;

pub use spill::SpillError;

use crate::config::{CheckConfig, Overrides};
use crate::load::{LoadRunError, NodePlan, RunPlan, plan_run};
use jetsam_core::jsonl::LoadError;
use jetsam_core::report::Report;
use std::path::{Path, PathBuf};

/// Why a streaming check could not run.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The run folder is bad input (exit code 2).
    #[error(transparent)]
    Load(#[from] LoadRunError),
    /// The temporary folder failed: the machine's problem (exit code 4).
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error(
        "failed to check: {0} changed while it was being checked (it was read twice); check the folder again once nothing writes to it"
    )]
    Changed(String),
}

impl From<LoadError> for StreamError {
    fn from(e: LoadError) -> Self {
        StreamError::Load(LoadRunError::File(e))
    }
}

impl StreamError {
    /// The exit code of `jetsam check` for this error (jetsam_core::exit).
    pub fn exit_code(&self) -> i32 {
        match self {
            StreamError::Load(_) | StreamError::Changed(_) => jetsam_core::exit::BAD_INPUT,
            StreamError::Spill(_) => jetsam_core::exit::ENVIRONMENT,
        }
    }
}

/// Knobs of the streaming check; the defaults are what `jetsam check` uses.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Acknowledgements sorted in memory at once; more are sorted through
    /// runs on disk (tests set it tiny to exercise the merge of many runs).
    pub run_acks: usize,
    /// Where the temporary folder is made; `None`: TMPDIR.
    pub tmp_parent: Option<PathBuf>,
    /// Resident size above which the per-op arrays' pages are dropped
    /// (they stay in their mapped files; [`mapped`]).
    pub rss_budget_bytes: u64,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions { run_acks: spill::RUN_ACKS, tmp_parent: None, rss_budget_bytes: mapped::RSS_BUDGET_BYTES }
    }
}

/// Reads and checks a run folder by streaming: [`plan_run`], then the passes.
pub fn check_dir(dir: &Path, overrides: &Overrides) -> Result<Report, StreamError> {
    let (plan, config) = plan_run(dir, overrides)?;
    check_plan(&plan, &config, &StreamOptions::default())
}

/// Checks a listed run folder by streaming, spilling to a temporary folder
/// under TMPDIR (removed when the check ends).
pub fn check_plan(plan: &RunPlan, config: &CheckConfig, options: &StreamOptions) -> Result<Report, StreamError> {
    assert!(options.run_acks > 0, "a run holds at least one acknowledgement");
    let parent = options.tmp_parent.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("jetsam-check-")
        .tempdir_in(&parent)
        .map_err(|source| SpillError { path: parent, source })?;
    let laps = Laps::start();
    let arena = Arena::new(tmp.path(), options.rss_budget_bytes);
    let (index, spilled) = index_history(&plan.history, tmp.path(), options.run_acks, &arena)?;
    laps.lap("1, history indexed");
    let events = plan.load_events()?;
    let views = view_list(plan);
    let report = finish::check(
        &finish::Inputs { plan, config, index: &index, views: &views, events: &events, arena: &arena },
        spilled,
        &laps,
    )?;
    // How often the mapped pages were dropped: 0 when the run fitted the
    // budget.
    laps.lap(&format!("done ({} trims of the mapped pages)", arena.trimmer.trims()));
    Ok(report)
}

/// With `JETSAM_STREAM_TIMES` set, each pass prints to stderr when it ends
/// (seconds since the check began): how the figures of docs/formats.md
/// were split by pass.
pub(crate) struct Laps {
    start: std::time::Instant,
    on: bool,
}

impl Laps {
    fn start() -> Laps {
        Laps { start: std::time::Instant::now(), on: std::env::var_os("JETSAM_STREAM_TIMES").is_some() }
    }

    pub(crate) fn lap(&self, what: &str) {
        if self.on {
            eprintln!("stream pass {what}: {:.2} s", self.start.elapsed().as_secs_f64());
        }
    }
}

/// Pass 1 over the history in its form.
fn index_history(
    path: &Path,
    tmp: &Path,
    run_acks: usize,
    arena: &Arena,
) -> Result<(index::OpIndex, index::Spilled), StreamError> {
    let mut indexer = index::Indexer::new(tmp, run_acks)?;
    let read = if crate::forms::is_compact(path) {
        crate::load::for_each_compact_op(path, |op| indexer.push_compact(op))
    } else {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        crate::history_reader::read_history_into(
            path,
            threads,
            crate::history_reader::BLOCK_BYTES,
            crate::load::json_error,
            |op| indexer.push(op),
        )
    };
    if let Some(e) = indexer.spill_error.take() {
        return Err(e.into());
    }
    read?;
    Ok(indexer.finish(arena)?)
}

/// Makes the per-op arrays, each in a mapped temporary file whose resident
/// pages are trimmed ([`mapped`]).
pub(crate) struct Arena {
    dir: PathBuf,
    trimmer: mapped::Trimmer,
    next: std::sync::atomic::AtomicUsize,
}

impl Arena {
    fn new(dir: &Path, rss_budget_bytes: u64) -> Arena {
        Arena { dir: dir.to_path_buf(), trimmer: mapped::Trimmer::start(rss_budget_bytes), next: 0.into() }
    }

    /// The temporary folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn words(&self, words: usize) -> Result<bits::Words, SpillError> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!("array-{n}"));
        let mapped = self.trimmer.map(&path, words).map_err(|source| SpillError { path, source })?;
        Ok(bits::Words::Mapped(mapped))
    }

    /// `len` 2-bit zeros.
    pub(crate) fn bits2(&self, len: usize) -> Result<bits::Bits2, SpillError> {
        Ok(bits::Bits2::over(self.words(bits::Bits2::words_for(len))?, len))
    }

    /// `len` zero bits.
    pub(crate) fn bits1(&self, len: usize) -> Result<bits::Bits1, SpillError> {
        Ok(bits::Bits1::over(self.words(bits::Bits1::words_for(len))?, len))
    }
}

/// A view of the run: a judged node read back, or the cluster view.
#[derive(Debug, Clone)]
pub(crate) struct ViewFile {
    pub name: String,
    pub path: PathBuf,
    /// Read offline (a node only).
    pub offline: bool,
    pub cluster: bool,
}

/// The views in the in-memory checker's order: the readable nodes by name,
/// then the cluster view.
fn view_list(plan: &RunPlan) -> Vec<ViewFile> {
    let mut views: Vec<ViewFile> = plan
        .nodes
        .iter()
        .filter_map(|(name, p)| match p {
            NodePlan::Read { path, offline } => {
                Some(ViewFile { name: name.clone(), path: path.clone(), offline: offline.is_some(), cluster: false })
            }
            NodePlan::Unreadable { .. } => None,
        })
        .collect();
    if let Some(path) = &plan.cluster {
        views.push(ViewFile {
            name: crate::CLUSTER_VIEW.to_string(),
            path: path.clone(),
            offline: false,
            cluster: true,
        });
    }
    views
}
