//! The compact run folder (format version 2: `history.bin`,
//! `recovered/<view>.bin`) checks to the very same report as its JSON
//! lines: every fixture is converted and both reports are compared whole
//! (the JSON-lines reports are pinned by the snapshots). Also: a folder with
//! both forms of a file, and a cut or invalid compact file, are errors that
//! name the file and the record.

mod common;

use common::convert;
use jetsam_checkers::{Overrides, check, load_run};
use jetsam_core::compact::HistoryEncoder;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jetsam-compact-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("recovered")).unwrap();
    dir
}

fn report_json(dir: &Path) -> String {
    let (input, config) = load_run(dir, &Overrides::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    serde_json::to_string_pretty(&check(&input, &config)).unwrap()
}

#[test]
fn every_fixture_checks_the_same_in_compact_form() {
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(fixtures()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 20, "fixtures missing: {cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let dir = scratch(&name);
        convert(&case, &dir);
        assert!(dir.join("history.bin").is_file() && !dir.join("history.jsonl").exists());
        assert_eq!(report_json(&dir), report_json(&case), "{name}: compact and JSON-lines reports differ");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn both_forms_or_a_bad_compact_file_are_errors_naming_it() {
    let dir = scratch("bad");
    convert(&fixtures().join("divergent"), &dir);
    let error = |dir: &Path| load_run(dir, &Overrides::default()).err().map(|e| e.to_string());

    std::fs::copy(fixtures().join("divergent/history.jsonl"), dir.join("history.jsonl")).unwrap();
    let e = error(&dir).unwrap();
    assert!(e.contains("both history.jsonl and history.bin exist"), "{e}");
    std::fs::remove_file(dir.join("history.jsonl")).unwrap();

    std::fs::copy(fixtures().join("divergent/recovered/n2.jsonl"), dir.join("recovered/n2.jsonl")).unwrap();
    let e = error(&dir).unwrap();
    assert!(e.contains("both recovered/n2.jsonl and recovered/n2.bin exist"), "{e}");
    std::fs::remove_file(dir.join("recovered/n2.jsonl")).unwrap();
    assert_eq!(error(&dir), None);

    // Cut inside the last record: the error names the file and that record.
    let bin = std::fs::read(dir.join("history.bin")).unwrap();
    let records = std::fs::read_to_string(fixtures().join("divergent/history.jsonl")).unwrap().lines().count();
    std::fs::write(dir.join("history.bin"), &bin[..bin.len() - 1]).unwrap();
    let e = error(&dir).unwrap();
    assert!(e.contains(&format!("history.bin:{records}: the file ends inside a record")), "{e}");

    // A valid encoding of an invalid history: an ok with no invoke.
    let mut enc = HistoryEncoder::new(Vec::new()).unwrap();
    let ok = r#"{"t_ns":1,"client":0,"type":"ok","id":"0-0","seq":1,"node":"n1"}"#;
    enc.push(&serde_json::from_str(ok).unwrap()).unwrap();
    std::fs::write(dir.join("history.bin"), enc.finish().unwrap()).unwrap();
    let e = error(&dir).unwrap();
    assert!(e.contains("history.bin:1: Ok completes id 0-0 which has no open invoke"), "{e}");

    // Not a compact file at all.
    std::fs::write(dir.join("recovered/n1.bin"), "{\"seq\":1,\"id\":\"0-0\"}\n").unwrap();
    std::fs::copy(fixtures().join("divergent/history.jsonl"), dir.join("history.jsonl")).unwrap();
    std::fs::remove_file(dir.join("history.bin")).unwrap();
    let e = error(&dir).unwrap();
    assert!(e.contains("n1.bin:0: not a compact recovered file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
