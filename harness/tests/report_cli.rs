//! `jetsam report RUN_FOLDER` end to end: report.html rebuilt offline from a
//! checked run folder shows one band per injection line of events.jsonl,
//! one loss window per window of report.json, each window with the whole
//! fault it follows, and the replay command; a folder without report.json
//! is bad input (exit 2).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn jetsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jetsam")).args(args).output().expect("the jetsam binary runs")
}

fn injections(dir: &Path) -> usize {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<jetsam_core::event::Event>(l).unwrap())
        .filter(|e| e.kind.is_fault())
        .count()
}

#[test]
fn report_html_shows_every_band_and_every_window_with_its_whole_fault() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("checkers/tests/fixtures/coordinated-power-loss"), dir.path());
    let path = dir.path().to_str().unwrap();
    assert_eq!(jetsam(&["check", path]).status.code(), Some(1), "the fixture loses 2 writes");
    let out = jetsam(&["report", path]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert_eq!(injections(dir.path()), 3);
    assert_eq!(html.matches("class=\"fault-band\" data-kind=\"power-loss\"").count(), 3, "one band per node");
    assert_eq!(html.matches("class=\"loss-window\"").count(), 1);
    assert_eq!(html.matches("<tr class=\"fault\">").count(), 1, "three lines, one fault");
    assert!(html.contains("power-loss [n1, n2, n3] at 0.460s"), "the window names the whole fault");
    assert_eq!(html.matches("<tr class=\"node\">").count(), 3);
    assert!(html.contains("restart at 0.900s"), "the heals are shown");
    // Self-contained: nothing to fetch (the SVG namespace is a name, not a fetch).
    let fetchable = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for needle in ["http://", "https://", "<script", "src=", "href="] {
        assert!(!fetchable.contains(needle), "report.html holds {needle}");
    }

    // A run folder from `jetsam run` carries its replay command.
    let run = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/run-lost"), run.path());
    let out = jetsam(&["report", run.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(run.path().join("report.html")).unwrap();
    let resolved = std::fs::read_to_string(run.path().join("scenario.resolved.toml")).unwrap();
    let replay = resolved.lines().next().unwrap().split_once("replay with: ").map(|(_, c)| c.to_string());
    if let Some(replay) = replay {
        assert!(html.contains(&format!("<pre id=\"replay\">{replay}</pre>")), "{html}");
    }
    assert_eq!(html.matches("class=\"fault-band\"").count(), injections(run.path()));
}

#[test]
fn a_folder_without_a_report_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = jetsam(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed to read") && err.contains("report.json"), "{err}");
}
