//! Which engine checks a run folder: the in-memory checker ([`crate::check`]
//! over [`crate::load::read_plan`]) or the streaming one ([`crate::stream`]).
//! Both give the same report; they differ in memory and speed
//! (docs/formats.md "Checker speed and memory"). `jetsam check --engine`
//! and `jetsam run` (always `auto`) choose through [`check_folder`].

use crate::config::{CheckConfig, Overrides};
use crate::load::{RunPlan, plan_run};
use crate::stream::{StreamError, StreamOptions};
use jetsam_core::report::Report;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// [`Engine::Stream`] when the history holds more than
    /// [`STREAM_ABOVE_WRITES`] writes (estimated from its size), else
    /// [`Engine::Memory`].
    Auto,
    /// The whole history and every view in compact structures (~15 bytes
    /// per acknowledged write with three views); the faster engine (1.1-1.8
    /// times) where the memory is there.
    Memory,
    /// Flat memory: 2 bits per op and 2 more per view in mapped temporary
    /// files, trimmed above a resident budget; the rest spilled to a
    /// temporary folder under TMPDIR (14-26 bytes per write).
    Stream,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Engine::Auto),
            "memory" => Ok(Engine::Memory),
            "stream" => Ok(Engine::Stream),
            other => Err(format!("unknown engine {other:?}: auto, memory or stream")),
        }
    }
}

/// History bytes per write, about: two JSON lines of ~70 bytes, or two
/// compact records of ~8 (measured on `jetsam run` and synth_run folders).
const JSONL_BYTES_PER_WRITE: u64 = 140;
const COMPACT_BYTES_PER_WRITE: u64 = 16;
/// Above this many writes `auto` streams: the in-memory engine would hold
/// ~30 MiB and more, growing by ~15 bytes a write.
pub const STREAM_ABOVE_WRITES: u64 = 2_000_000;

impl Engine {
    /// `auto` decided by the history file's size; the others as they are.
    pub fn resolve(self, plan: &RunPlan) -> Engine {
        if self != Engine::Auto {
            return self;
        }
        let bytes = std::fs::metadata(&plan.history).map_or(0, |m| m.len());
        let compact = crate::forms::is_compact(&plan.history);
        let per_write = if compact { COMPACT_BYTES_PER_WRITE } else { JSONL_BYTES_PER_WRITE };
        if bytes / per_write > STREAM_ABOVE_WRITES { Engine::Stream } else { Engine::Memory }
    }
}

/// Lists, reads and checks a run folder with `engine`.
pub fn check_folder(dir: &Path, overrides: &Overrides, engine: Engine) -> Result<(Report, CheckConfig), StreamError> {
    let (plan, config) = plan_run(dir, overrides)?;
    let report = match engine.resolve(&plan) {
        Engine::Stream => crate::stream::check_plan(&plan, &config, &StreamOptions::default())?,
        Engine::Memory | Engine::Auto => crate::check(&crate::load::read_plan(&plan)?, &config),
    };
    Ok((report, config))
}
