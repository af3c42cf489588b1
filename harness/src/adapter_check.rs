//! `jetsam adapter check TARGET_FILE`: starts a small cluster of a target
//! file's system, drives each request of the adapter protocol once, kills
//! and restarts a node, and prints one line per part (`ok`, `FAIL` with what
//! was wrong, or `skip` with why), so the author of an adapter sees in
//! seconds which parts it gets right (docs/adapter-protocol.md, last
//! section). Exit code: 0 every part ok, 1 any part wrong, 2 a broken target
//! file, 4 the cluster itself could not be started.

use crate::cluster::{Cluster, ClusterOptions};
use crate::events::EventLog;
use jetsam_core::exit;
use jetsam_core::scenario::Scenario;
use jetsam_targets::adapter::AdapterTarget;
use jetsam_targets::adapter::spec::{LoadedTarget, SyncMatch};
use jetsam_targets::{PublishOutcome, Publisher, Target};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Publishes per round (before and after the restart).
const PUBLISHES: usize = 20;
/// fail/info answers allowed per round (a client reconnecting after a restart).
const NOT_OK_MAX: usize = 5;
/// Bound on one publish.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on `ready`, `create`, `converged`.
const WAIT: Duration = Duration::from_secs(30);
/// Bound on one read.
const READ_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct AdapterArgs {
    #[command(subcommand)]
    pub command: AdapterCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AdapterCommand {
    /// Start a small cluster, drive every request of the protocol once, kill and
    /// restart a node, and say which parts the adapter gets right.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The target file (target.toml, docs/adapter-protocol.md).
    pub target_file: PathBuf,
    /// Nodes to start (default: 3 where the target file allows it, else its nodes_max or nodes_min).
    #[arg(long)]
    pub nodes: Option<u32>,
    /// The run folder (default results/adapter-check/<target>/<UTC time>); must not exist or be empty.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn execute(args: AdapterArgs) -> i32 {
    match args.command {
        AdapterCommand::Check(args) => check(&args),
    }
}

/// The lines printed so far and their tally.
#[derive(Default)]
struct Parts {
    ok: usize,
    failed: usize,
    skipped: usize,
}

impl Parts {
    fn ok(&mut self, part: &str, detail: impl AsRef<str>) {
        self.ok += 1;
        println!("ok    {part}: {}", detail.as_ref());
    }
    fn fail(&mut self, part: &str, detail: impl AsRef<str>) {
        self.failed += 1;
        println!("FAIL  {part}: {}", detail.as_ref());
    }
    fn skip(&mut self, part: &str, why: &str) {
        self.skipped += 1;
        println!("skip  {part}: {why}");
    }
    fn result(&mut self, part: &str, r: Result<String, String>) -> bool {
        match r {
            Ok(d) => {
                self.ok(part, d);
                true
            }
            Err(e) => {
                self.fail(part, e);
                false
            }
        }
    }
}

/// The scenario the check runs: the target file's first mode, one client.
fn scenario_for(spec: &LoadedTarget, path: &Path, nodes: u32) -> Result<Scenario, String> {
    let mode = spec.file.modes.first().expect("a target file has a mode (checked at load)");
    let sync = match SyncMatch::parse(&mode.sync).map_err(|e| e.to_string())? {
        SyncMatch::Default => String::new(),
        SyncMatch::Always => "sync = \"always\"\n".into(),
        SyncMatch::Interval => "sync = \"1s\"\n".into(),
        SyncMatch::Exactly(_) => format!("sync = {:?}\n", mode.sync),
    };
    let text = format!(
        "name = \"adapter-check\"\nnodes = {nodes}\nduration = \"10s\"\n[target]\nkind = \"adapter\"\nfile = {:?}\n\
         [stream]\nreplicas = {nodes}\nconsistency = \"{}\"\n{sync}[workload]\nclients = 1\ntimeout = \"5s\"\n",
        path.display().to_string(),
        mode.consistency
    );
    Scenario::from_toml_str("adapter check", &text).map_err(|e| e.to_string())
}

fn default_nodes(spec: &LoadedTarget) -> u32 {
    3.max(spec.file.nodes_min).min(spec.file.nodes_max)
}

fn check(args: &CheckArgs) -> i32 {
    let mut parts = Parts::default();
    let spec = match LoadedTarget::load(&args.target_file) {
        Ok(s) => s,
        Err(e) => {
            parts.fail("target file", e.to_string());
            return exit::BAD_INPUT;
        }
    };
    let nodes = args.nodes.unwrap_or_else(|| default_nodes(&spec));
    let scenario = match scenario_for(&spec, &args.target_file, nodes) {
        Ok(s) => s,
        Err(e) => {
            parts.fail("target file", format!("cannot make a scenario of its first mode: {e}"));
            return exit::BAD_INPUT;
        }
    };
    let described = format!(
        "{} ({}), {} mode(s), {} setting(s)",
        spec.file.name,
        spec.file.description,
        spec.file.modes.len(),
        spec.file.settings.len()
    );
    let target = match AdapterTarget::for_scenario(spec, &scenario) {
        Ok(t) => t,
        Err((m, f)) => {
            parts.fail("target file", format!("{m}; fix: {f}"));
            return exit::BAD_INPUT;
        }
    };
    if let Err((m, f)) = target.validate(&scenario) {
        parts.fail("target file", format!("{m}; fix: {f} (or pass --nodes)"));
        return exit::BAD_INPUT;
    }
    parts.ok("target file", described);
    let run_dir = match make_dir(args, &target) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    println!(
        "cluster: {nodes} node(s), {} + sync {}, run folder {}",
        scenario.stream.mode(),
        scenario.stream.sync.as_deref().unwrap_or("default"),
        run_dir.display()
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return exit::ENVIRONMENT;
        }
    };
    let code = runtime.block_on(drive(&scenario, &target, &run_dir, &mut parts));
    runtime.shutdown_timeout(Duration::from_secs(5));
    if let Some(code) = code {
        return code;
    }
    println!(
        "adapter check: {} of {} parts ok, {} wrong, {} skipped; adapter logs in {}",
        parts.ok,
        parts.ok + parts.failed,
        parts.failed,
        parts.skipped,
        run_dir.join("adapter").display()
    );
    if parts.failed == 0 { exit::PASS } else { exit::FAIL }
}

fn make_dir(args: &CheckArgs, target: &AdapterTarget) -> Result<PathBuf, String> {
    let dir = match &args.out {
        Some(d) => d.clone(),
        None => {
            PathBuf::from("results").join("adapter-check").join(&target.spec().file.name).join(crate::run::utc_stamp())
        }
    };
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(format!("failed to use {}: it exists and is not empty; choose a new folder", dir.display()));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Publishes `PUBLISHES` messages and checks each is acknowledged at a new
/// sequence; adds them to `acked` (msg -> seq).
async fn publish_round(
    publisher: &dyn Publisher,
    round: usize,
    acked: &mut BTreeMap<String, u64>,
) -> Result<String, String> {
    let mut seqs = Vec::with_capacity(PUBLISHES);
    let mut by = std::collections::BTreeSet::new();
    // fail and info are right answers while a client reconnects to a node
    // that was just restarted; a few are allowed, not a run of them.
    let mut not_ok: Vec<String> = Vec::new();
    let mut i = 0;
    while seqs.len() < PUBLISHES {
        let msg = format!("{round}-{i}");
        i += 1;
        let outcome = tokio::time::timeout(PUBLISH_TIMEOUT, publisher.publish(msg.clone(), b"jetsamcheck".to_vec()))
            .await
            .unwrap_or(PublishOutcome::Info { error: format!("no reply within {PUBLISH_TIMEOUT:?}") });
        match outcome {
            PublishOutcome::Ok { seq, node } => {
                if let Some((other, _)) = acked.iter().find(|(_, s)| **s == seq) {
                    return Err(format!("publish {msg} acknowledged at seq {seq}, which {other} was acknowledged at"));
                }
                acked.insert(msg, seq);
                seqs.push(seq);
                by.insert(node);
            }
            PublishOutcome::Fail { error } => not_ok.push(format!("publish {msg}: fail: {error}")),
            PublishOutcome::Info { error } => not_ok.push(format!("publish {msg}: info: {error}")),
        }
        if not_ok.len() > NOT_OK_MAX {
            return Err(format!(
                "{} of {i} publishes not acknowledged; the last: {}",
                not_ok.len(),
                not_ok.last().expect("not empty")
            ));
        }
    }
    let by: Vec<String> = by.into_iter().collect();
    let retried = match not_ok.first() {
        None => String::new(),
        Some(first) => format!(" ({} fail/info answers first, e.g. {first})", not_ok.len()),
    };
    Ok(format!(
        "{PUBLISHES} acknowledged at seqs {}..{} by {}{retried}",
        seqs.iter().min().unwrap_or(&0),
        seqs.iter().max().unwrap_or(&0),
        by.join(", ")
    ))
}

/// Every acknowledged message is in `msgs` at its acknowledged sequence.
fn check_read(
    what: &str,
    msgs: &[jetsam_core::recovered::RecoveredMsg],
    acked: &BTreeMap<String, u64>,
) -> Result<String, String> {
    let at: BTreeMap<u64, &str> = msgs.iter().map(|m| (m.seq, m.id.as_str())).collect();
    let wrong: Vec<String> = acked
        .iter()
        .filter(|(msg, seq)| at.get(seq) != Some(&msg.as_str()))
        .take(5)
        .map(|(msg, seq)| match at.get(seq) {
            Some(other) => format!("{msg} (acked at seq {seq}) but {other} is there"),
            None => format!("{msg} (acked at seq {seq}) missing"),
        })
        .collect();
    if wrong.is_empty() {
        Ok(format!("all {} acknowledged messages at their sequences ({} held)", acked.len(), msgs.len()))
    } else {
        Err(format!("{what}: {} held; {}", msgs.len(), wrong.join("; ")))
    }
}

/// The parts that need a running cluster. `Some(code)` when the cluster
/// could not be started (exit 4) or the harness failed.
async fn drive(scenario: &Scenario, target: &AdapterTarget, run_dir: &Path, parts: &mut Parts) -> Option<i32> {
    let start = Instant::now();
    let env_err = |e: String| {
        eprintln!("error: {e}");
        Some(exit::ENVIRONMENT)
    };
    let events = match EventLog::create(&run_dir.join(jetsam_checkers::load::EVENTS_FILE), start) {
        Ok(e) => e,
        Err(e) => return env_err(e.to_string()),
    };
    let mut cluster = match Cluster::prepare(run_dir, scenario, target, ClusterOptions::default()).await {
        Ok(c) => c,
        Err(e) => return env_err(format!("failed to prepare the cluster: {e}")),
    };
    if let Err(e) = cluster.start_all() {
        return env_err(format!("failed to start the cluster: {e}"));
    }
    let specs = cluster.specs().to_vec();
    let names = cluster.names();
    let rest = ["ready", "create", "publish", "leader", "kill and restart", "converged", "read_cluster", "read"];
    let skip_rest = |parts: &mut Parts, from: usize, why: &str| {
        for p in &rest[from..] {
            parts.skip(p, why);
        }
    };
    let hello = match target.hello_control(&specs).await {
        Ok(h) => {
            parts.ok("hello", format!("{} (cluster_view: {}, leader: {})", h.adapter, h.cluster_view, h.leader));
            h
        }
        Err(e) => {
            parts.fail("hello", e);
            skip_rest(parts, 0, "needs hello");
            return None;
        }
    };
    let t = Instant::now();
    if let Err(e) = target.wait_ready(&specs, WAIT).await {
        // A node that exited is the system's (or the target file's) problem, not the adapter's.
        for name in &names {
            if cluster.check_alive(name, &events).is_ok()
                && let Some(status) = cluster.own_exit(name)
            {
                return env_err(format!(
                    "failed to start the cluster: node {name} exited on its own ({status}); see {}",
                    run_dir.join("nodes").join(format!("{name}.log")).display()
                ));
            }
        }
        parts.fail("ready", e.to_string());
        skip_rest(parts, 1, "needs ready");
        return None;
    }
    parts.ok("ready", format!("in {} ms", t.elapsed().as_millis()));
    if !parts.result(
        "create",
        target.create_stream(scenario, &specs, WAIT).await.map(|_| "ok".into()).map_err(|e| e.to_string()),
    ) {
        skip_rest(parts, 2, "needs create");
        return None;
    }
    let publisher = match target.publisher(scenario, &specs, 0).await {
        Ok(p) => p,
        Err(e) => {
            parts.fail("publish", format!("cannot start a client process: {e}"));
            skip_rest(parts, 3, "needs a client process");
            return None;
        }
    };
    let mut acked = BTreeMap::new();
    let published = publish_round(publisher.as_ref(), 0, &mut acked).await;
    let published_ok = parts.result("publish", published);
    if hello.leader {
        match target.leader(&specs).await {
            Some(n) => parts.ok("leader", n),
            None if target.fatal().is_some() => parts.fail("leader", target.fatal().unwrap_or_default()),
            None => parts.ok("leader", "none reported (allowed: leader null)"),
        }
    } else {
        parts.skip("leader", "hello said leader: false");
    }
    let last = names.last().expect("at least one node").clone();
    let t = Instant::now();
    let restarted = async {
        cluster.kill(&last, &events, Vec::new()).map_err(|e| format!("SIGKILL: {e}"))?;
        cluster.restart(&last, &events, Vec::new()).map_err(|e| format!("restart: {e}"))?;
        target.wait_ready(&specs, WAIT).await.map_err(|e| format!("ready after the restart: {e}"))?;
        let ready_ms = t.elapsed().as_millis();
        let again =
            publish_round(publisher.as_ref(), 1, &mut acked).await.map_err(|e| format!("after the restart: {e}"))?;
        Ok::<String, String>(format!("{last} killed, restarted, ready in {ready_ms} ms; {again}"))
    }
    .await;
    let restarted_ok = parts.result("kill and restart", restarted);
    parts.result(
        "converged",
        target.wait_converged(scenario, &specs, WAIT).await.map(|_| "ok".into()).map_err(|e| e.to_string()),
    );
    if !(published_ok || restarted_ok) {
        parts.skip("read", "no acknowledged publish to look for");
        parts.skip("read_cluster", "no acknowledged publish to look for");
    } else {
        // The cluster view needs the nodes up; after-stop targets read each
        // node's files once it is stopped.
        if hello.cluster_view {
            let read = target.read_cluster(scenario, &specs).await.unwrap_or_else(|| Err("no cluster view".into()));
            parts.result("read_cluster", read.and_then(|m| check_read("read_cluster", &m, &acked)));
        } else {
            parts.skip("read_cluster", "hello said cluster_view: false");
        }
        if target.read_back_mode() == jetsam_targets::ReadBack::AfterStop {
            let _ = cluster.stop_all();
        }
        for spec in &specs {
            let part = format!("read {}", spec.name);
            let read = tokio::time::timeout(READ_WAIT, target.read_node(scenario, spec))
                .await
                .unwrap_or_else(|_| Err(format!("no reply within {READ_WAIT:?}")));
            parts.result(&part, read.and_then(|m| check_read(&part, &m, &acked)));
        }
    }
    if let Some(why) = target.fatal() {
        parts.fail("protocol", why);
    }
    let _ = cluster.stop_all();
    cluster.shutdown_proxies().await;
    None
}
