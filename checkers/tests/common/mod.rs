//! Helpers shared by the checker's integration tests.

#![allow(dead_code)] // each test file uses some of these

use jetsam_checkers::stream::{self, StreamOptions};
use jetsam_checkers::{Overrides, check, load_run};
use jetsam_core::compact::{HistoryEncoder, RecoveredEncoder};
use jetsam_core::history::OpRef;
use jetsam_core::recovered::RecoveredMsgRef;
use std::path::{Path, PathBuf};

/// An empty run folder (with `recovered/`) for one test case.
pub fn scratch(kind: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jetsam-{kind}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("recovered")).unwrap();
    dir
}

/// The in-memory engine's report.json text, or its error.
pub fn in_memory(dir: &Path) -> Result<String, String> {
    let (input, config) = load_run(dir, &Overrides::default()).map_err(|e| e.to_string())?;
    Ok(serde_json::to_string_pretty(&check(&input, &config)).unwrap())
}

/// The streaming engine's report.json text, or its error.
pub fn streamed_with(dir: &Path, options: &StreamOptions) -> Result<String, String> {
    let (plan, config) = jetsam_checkers::load::plan_run(dir, &Overrides::default()).map_err(|e| e.to_string())?;
    let report = stream::check_plan(&plan, &config, options).map_err(|e| e.to_string())?;
    Ok(serde_json::to_string_pretty(&report).unwrap())
}

/// [`streamed_with`] sorting in runs of `run_acks`, and (odd `run_acks`)
/// dropping the mapped pages at every look.
pub fn streamed(dir: &Path, run_acks: usize) -> Result<String, String> {
    streamed_with(dir, &StreamOptions { run_acks, rss_budget_bytes: run_acks as u64 % 2, ..StreamOptions::default() })
}

/// Copies a run folder, writing its history and views in compact form.
pub fn convert(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "history.jsonl" {
            let mut enc = HistoryEncoder::new(Vec::new()).unwrap();
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let op: OpRef<'_> = serde_json::from_str(line).unwrap();
                enc.push(&op).unwrap();
            }
            std::fs::write(to.join("history.bin"), enc.finish().unwrap()).unwrap();
        } else if path.is_file() && name != "report.json" {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
    let recovered = from.join("recovered");
    if !recovered.is_dir() {
        return;
    }
    for entry in std::fs::read_dir(&recovered).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match name.strip_suffix(".jsonl") {
            Some(view) => {
                let mut enc = RecoveredEncoder::new(Vec::new()).unwrap();
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    let m: RecoveredMsgRef<'_> = serde_json::from_str(line).unwrap();
                    enc.push(m.seq, &m.id).unwrap();
                }
                std::fs::write(to.join("recovered").join(format!("{view}.bin")), enc.finish().unwrap()).unwrap();
            }
            None => {
                std::fs::copy(&path, to.join("recovered").join(&name)).unwrap();
            }
        }
    }
}
