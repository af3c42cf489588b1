//! The pages people look at, checked in a real browser: a small matrix
//! (two cells of a scenario that loses acknowledged writes on a
//! coordinated power loss) is run, and each cell's report.html and the
//! matrix's comparison.html are rendered by headless Chromium (Debian
//! package `chromium`, installed by scripts/install-browser.sh). From the
//! DOM Chromium rendered, each report shows as many fault bands as its
//! events.jsonl has injection lines and as many loss windows as its
//! report.json, and the comparison one row and one bar per plot per cell.
//! Screenshots go to the target folder (outside git).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on one Chromium render.
const RENDER_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs Chromium headless on `page` with `mode` (`--dump-dom` or
/// `--screenshot=PATH`), bounded by [`RENDER_TIMEOUT`]; returns stdout.
fn chromium(page: &Path, mode: &str, profile: &Path) -> String {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let out_file = profile.join(format!("stdout-{}", std::process::id()));
    let stdout = std::fs::File::create(&out_file).unwrap();
    let mut child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1100,2400", mode])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start chromium ({e}): run scripts/install-browser.sh"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > RENDER_TIMEOUT {
            // Ours, by pid.
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not render {url} within {RENDER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium on {url}: {status}");
    std::fs::read_to_string(&out_file).unwrap()
}

/// Renders `page` to the DOM (asserted on) and to a screenshot in the target folder.
fn render(page: &Path, shot_name: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(page, "--dump-dom", profile.path());
    assert!(dom.contains("</html>"), "a whole DOM for {}: {dom}", page.display());
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(shot_name);
    let _ = std::fs::remove_file(&shot);
    chromium(page, &format!("--screenshot={}", shot.display()), profile.path());
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a screenshot of {}", page.display());
    eprintln!("screenshot: {}", shot.display());
    dom
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

#[test]
fn report_and_comparison_pages_render_in_chromium() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("m");
    let result = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .current_dir(repo())
        .args(["matrix", "scenarios/ci/ack-before-fsync-power-loss.toml"])
        .args(["--set", "stream.sync=always,200ms", "--duration", "4s", "--seed", "11", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(matches!(result.status.code(), Some(0 | 1)), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    let csv = std::fs::read_to_string(dir.join("comparison.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3, "a header and two cells: {csv}");
    assert!(rows[0].starts_with("stream.sync,verdict,expect,acked,"), "{csv}");

    let mut windows_total = 0;
    for (cell, row) in ["stream.sync=always", "stream.sync=200ms"].iter().zip(&rows[1..]) {
        let run = dir.join(cell);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
        let verdict = report["verdict"].as_str().unwrap();
        assert!(row.contains(&format!(",{verdict},")), "the CSV row carries the verdict: {row}");
        let injections = std::fs::read_to_string(run.join("events.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<jetsam_core::event::Event>(l).unwrap())
            .filter(|e| e.kind.is_fault())
            .count();
        let windows = report["loss_windows"].as_array().unwrap().len();
        windows_total += windows;
        assert!(injections >= 3, "{cell}: the power loss at 3 s hits three nodes");
        let dom = render(&run.join("report.html"), &format!("report-{cell}.png"));
        assert_eq!(count(&dom, "class=\"fault-band\""), injections, "{cell}: fault bands");
        assert_eq!(count(&dom, "class=\"loss-window\""), windows, "{cell}: loss windows");
        assert_eq!(count(&dom, "<tr class=\"loss-row\">"), windows, "{cell}: loss-window rows");
        assert!(dom.contains(&format!("id=\"verdict\">{verdict}</span>")), "{cell}: verdict shown");
    }
    assert!(windows_total > 0, "ack-before-fsync loses acknowledged writes on a coordinated power loss");

    let dom = render(&dir.join("comparison.html"), "comparison.png");
    assert_eq!(count(&dom, "<tr class=\"cell\">"), 2);
    assert_eq!(count(&dom, "class=\"lost-bar\""), 2);
    assert_eq!(count(&dom, "class=\"acks-bar\""), 2);
}
