//! `jetsam matrix` refusals: every cell is validated before anything
//! starts, and an invalid one stops the matrix with the scenario's own
//! message (exit 2) and no run folder. (A real matrix runs in
//! tests/browser.rs, which also renders its pages.)

use std::path::Path;
use std::process::Command;

#[test]
fn an_invalid_cell_is_refused_before_anything_starts() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("m");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/default.toml");
    let result = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .arg("matrix")
        .arg(&scenario)
        .args(["--set", "stream.sync=always,soon", "--set", "stream.consistency=strong", "--duration", "1s", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cell stream.sync=soon,stream.consistency=strong") && err.contains("invalid duration \"soon\""),
        "{err}"
    );
    let entries: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(entries, vec!["cells".to_string()], "no cell ran");

    // A key the scenario schema does not know is refused the same way.
    let result = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .arg("matrix")
        .arg(&scenario)
        .args(["--set", "stream.speed=fast", "--out"])
        .arg(out.path().join("m2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{err}");
    assert!(err.contains("speed"), "{err}");
    // A malformed --set is a usage error.
    let result = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .arg("matrix")
        .arg(&scenario)
        .args(["--set", "nodes", "--out"])
        .arg(out.path().join("m3"))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("KEY=V1,V2"));
}
