//! Snapshots of report.json and the console summary for every fixture run
//! folder, so any change to what the checker says is reviewed (the .snap
//! files are committed; `INSTA_UPDATE=always cargo test` rewrites them).

use jetsam_checkers::{Overrides, check, load_run, render_summary};
use std::path::Path;

#[test]
fn reports_and_summaries_match_their_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut cases: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "fixtures missing: {cases:?}");
    for case in cases {
        let (input, config) = load_run(&root.join(&case), &Overrides::default()).unwrap();
        let report = check(&input, &config);
        insta::assert_json_snapshot!(format!("{case}.report"), report);
        insta::assert_snapshot!(format!("{case}.summary"), render_summary(&report));
    }
}
