//! CI smoke pair for the NATS target: two short nats-server 2.12.1
//! scenarios (`scenarios/nats/ci/`) through the `jetsam` binary. A
//! coordinated power loss with nats-server's default sync (2 minutes) must
//! be caught (verdict fail, acknowledged writes lost); the same power loss
//! with `sync = "always"` must pass. A third run puts an R3 stream on 5
//! servers: the run folder names the 3 that hold it and judges only them.
//!
//! Needs `.nats/2.12.1/bin/nats-server` (`scripts/install-nats.sh 2.12.1`)
//! and the workspace binaries (`jetsam-tracer`; `scripts/test.sh` builds
//! them). Without the server binary the tests fail with the install command,
//! unless `JETSAM_SKIP_NATS=1`, which skips them. It does not test the NATS
//! adapter's pieces (targets/src/nats.rs has those tests).

use jetsam_core::report::{Report, Verdict};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One NATS cluster at a time: the tests of this file run in parallel
/// threads, and two clusters on a small machine would slow each other down.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

const VERSION: &str = "2.12.1";
/// Bound on one smoke run: 13 s of load plus start, a convergence wait of at
/// most 30 s, reads of at most 15 s for a leader, and a debug build's slack.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// False when the test should be skipped; panics with the install command
/// when the server binary is missing and skipping was not asked for.
fn nats_available() -> bool {
    if std::env::var("JETSAM_SKIP_NATS").is_ok_and(|v| v == "1") {
        eprintln!("JETSAM_SKIP_NATS=1: skipping the NATS smoke test");
        return false;
    }
    if let Err(e) = jetsam_targets::nats::find_nats_server(VERSION, None) {
        panic!("nats-server {VERSION} is missing: {e}; or set JETSAM_SKIP_NATS=1 to skip the NATS smoke tests");
    }
    true
}

/// The `jetsam` child, killed on drop so a failing test leaves nothing
/// running (the controller's nodes die with it: parent-death signal).
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `jetsam run` on a CI scenario into a fresh folder and returns its
/// exit code, the report and the printed output.
fn run(scenario: &str, out: &Path) -> (i32, Report, String) {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let run_dir = out.join("run");
    let log = out.join("output.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .current_dir(repo())
        .env("CI", "1")
        .arg("run")
        .arg(repo().join("scenarios/nats/ci").join(scenario))
        .arg("--seed")
        .arg("1")
        .arg("--out")
        .arg(&run_dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut controller = Controller(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = controller.0.try_wait().unwrap() {
            break status;
        }
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "jetsam run {scenario} still running after {RUN_TIMEOUT:?}:\n{output}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).unwrap();
    let code = status.code().unwrap_or_else(|| panic!("jetsam run {scenario} died by a signal: {status}\n{output}"));
    let text = std::fs::read_to_string(run_dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json from {scenario} (exit {code}): {e}\n{output}"));
    (code, serde_json::from_str(&text).unwrap(), output)
}

#[test]
fn power_loss_with_default_sync_loses_acknowledged_writes() {
    if !nats_available() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let (code, report, output) = run("power-loss-default-sync.toml", out.path());
    assert_eq!(report.verdict, Verdict::Fail, "{output}");
    assert_eq!(code, jetsam_core::exit::FAIL, "{output}");
    assert!(report.acked > 1000, "only {} acked:\n{output}", report.acked);
    assert!(report.lost > 0, "nothing lost:\n{output}");
    assert!(!report.loss_windows.is_empty(), "the lost writes form a loss window:\n{output}");
}

#[test]
fn power_loss_with_sync_always_keeps_every_acknowledged_write() {
    if !nats_available() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let (code, report, output) = run("power-loss-sync-always.toml", out.path());
    assert_eq!(report.verdict, Verdict::Pass, "{:?}\n{output}", report.reasons);
    assert_eq!(code, jetsam_core::exit::PASS, "{output}");
    assert!(report.acked > 1000, "only {} acked:\n{output}", report.acked);
    assert_eq!(report.lost, 0, "{output}");
}

#[test]
fn r3_on_5_servers_reads_back_and_judges_only_the_replicas() {
    if !nats_available() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let (code, report, output) = run("r3-on-5-kill-leader.toml", out.path());
    assert_eq!((report.verdict, code), (Verdict::Pass, jetsam_core::exit::PASS), "{:?}\n{output}", report.reasons);
    assert!(report.acked > 500, "only {} acked:\n{output}", report.acked);
    let replicas = report.replicas.clone().unwrap_or_else(|| panic!("no placement in report.json:\n{output}"));
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    assert_eq!(report.nodes.keys().cloned().collect::<Vec<_>>(), replicas, "only the replicas are judged");
    let recovered = out.path().join("run/recovered");
    let placement = std::fs::read_to_string(recovered.join("replicas.json")).unwrap();
    assert_eq!(placement, format!("{{\"replicas\":{}}}\n", serde_json::to_string(&replicas).unwrap()));
    let mut files: Vec<String> =
        std::fs::read_dir(&recovered).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let mut want: Vec<String> = replicas.iter().map(|n| format!("{n}.jsonl")).collect();
    want.extend(["cluster.jsonl".to_string(), "replicas.json".to_string()]);
    want.sort();
    assert_eq!(files, want, "a file per replica, none for the other two servers");
    assert!(output.contains(&format!("stream placed on {}", replicas.join(", "))), "{output}");
}
