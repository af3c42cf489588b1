//! Helpers shared by the checker's integration tests.

use jetsam_core::compact::{HistoryEncoder, RecoveredEncoder};
use jetsam_core::history::OpRef;
use jetsam_core::recovered::RecoveredMsgRef;
use std::path::Path;

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
