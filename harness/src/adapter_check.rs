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

/// The parts after `target file`, in order.
const PARTS: [&str; 10] = [
    "hello",
    "ready",
    "create",
    "publish",
    "leader",
    "kill and restart",
    "converged",
    "read_cluster",
    "read",
    "failover",
];
/// Parts nothing later can do without.
const ESSENTIAL: [&str; 3] = ["hello", "ready", "create"];

/// Why a part is not ok.
enum NotOk {
    Fail(String),
    Skip(String),
    /// The cluster itself could not be run (exit 4).
    Environment(String),
}

impl From<String> for NotOk {
    fn from(e: String) -> NotOk {
        NotOk::Fail(e)
    }
}

/// A started cluster and what the parts so far found.
struct Session<'a> {
    scenario: &'a Scenario,
    target: &'a AdapterTarget,
    run_dir: &'a Path,
    cluster: Cluster,
    events: EventLog,
    specs: Vec<jetsam_targets::NodeSpec>,
    hello: Option<jetsam_targets::adapter::target::Hello>,
    publisher: Option<Box<dyn Publisher>>,
    /// msg -> acknowledged seq.
    acked: BTreeMap<String, u64>,
}

impl Session<'_> {
    async fn part(&mut self, part: &str) -> Result<String, NotOk> {
        match part {
            "hello" => {
                let h = self.target.hello_control(&self.specs).await?;
                let d = format!(
                    "{} (cluster_view: {}, leader: {}, failover: {})",
                    h.adapter, h.cluster_view, h.leader, h.failover
                );
                self.hello = Some(h);
                Ok(d)
            }
            "ready" => self.ready().await,
            "create" => {
                self.target.create_stream(self.scenario, &self.specs, WAIT).await.map_err(|e| e.to_string())?;
                Ok("ok".into())
            }
            "publish" => {
                let p = self.target.publisher(self.scenario, &self.specs, 0).await.map_err(|e| e.to_string())?;
                let p = self.publisher.insert(p);
                Ok(publish_round(p.as_ref(), 0, &mut self.acked).await?)
            }
            "leader" => self.leader().await,
            "kill and restart" => self.restart().await,
            "converged" => {
                self.target.wait_converged(self.scenario, &self.specs, WAIT).await.map_err(|e| e.to_string())?;
                Ok("ok".into())
            }
            "read_cluster" => self.read_cluster().await,
            "read" => self.read_nodes().await,
            "failover" => self.failover().await,
            other => unreachable!("unknown part {other}"),
        }
    }

    async fn ready(&mut self) -> Result<String, NotOk> {
        let t = Instant::now();
        if let Err(e) = self.target.wait_ready(&self.specs, WAIT).await {
            // A node that exited is the system's (or the target file's) problem, not the adapter's.
            for name in self.cluster.names() {
                if self.cluster.check_alive(&name, &self.events).is_ok()
                    && let Some(status) = self.cluster.own_exit(&name)
                {
                    return Err(NotOk::Environment(format!(
                        "failed to start the cluster: node {name} exited on its own ({status}); see {}",
                        self.run_dir.join("nodes").join(format!("{name}.log")).display()
                    )));
                }
            }
            return Err(NotOk::Fail(e.to_string()));
        }
        Ok(format!("in {} ms", t.elapsed().as_millis()))
    }

    async fn leader(&mut self) -> Result<String, NotOk> {
        if !self.hello.as_ref().is_some_and(|h| h.leader) {
            return Err(NotOk::Skip("hello said leader: false".into()));
        }
        match self.target.leader(&self.specs).await {
            Some(n) => Ok(n),
            None => match self.target.fatal() {
                Some(f) => Err(NotOk::Fail(f)),
                None => Ok("none reported (allowed: leader null)".into()),
            },
        }
    }

    async fn restart(&mut self) -> Result<String, NotOk> {
        let Some(publisher) = self.publisher.as_ref() else {
            return Err(NotOk::Skip("needs a client process".into()));
        };
        let last = self.specs.last().expect("at least one node").name.clone();
        let t = Instant::now();
        self.cluster.kill(&last, &self.events, Vec::new()).map_err(|e| format!("SIGKILL: {e}"))?;
        self.cluster.restart(&last, &self.events, Vec::new()).map_err(|e| format!("restart: {e}"))?;
        self.target.wait_ready(&self.specs, WAIT).await.map_err(|e| format!("ready after the restart: {e}"))?;
        let ready_ms = t.elapsed().as_millis();
        let again = publish_round(publisher.as_ref(), 1, &mut self.acked)
            .await
            .map_err(|e| format!("after the restart: {e}"))?;
        Ok(format!("{last} killed, restarted, ready in {ready_ms} ms; {again}"))
    }

    /// The cluster view needs the nodes up: read before any after-stop read.
    async fn read_cluster(&mut self) -> Result<String, NotOk> {
        if !self.hello.as_ref().is_some_and(|h| h.cluster_view) {
            return Err(NotOk::Skip("hello said cluster_view: false".into()));
        }
        if self.acked.is_empty() {
            return Err(NotOk::Skip("no acknowledged publish to look for".into()));
        }
        let read =
            self.target.read_cluster(self.scenario, &self.specs).await.unwrap_or_else(|| Err("no cluster view".into()));
        Ok(check_read("read_cluster", &read?, &self.acked)?)
    }

    async fn read_nodes(&mut self) -> Result<String, NotOk> {
        if self.acked.is_empty() {
            return Err(NotOk::Skip("no acknowledged publish to look for".into()));
        }
        if self.target.read_back_mode() == jetsam_targets::ReadBack::AfterStop {
            let _ = self.cluster.stop_all();
        }
        self.read_each(&[]).await
    }

    /// Reads every node but the `skipped` ones and checks each holds every
    /// acknowledged message at its sequence.
    async fn read_each(&self, skipped: &[String]) -> Result<String, NotOk> {
        let mut found = Vec::new();
        for spec in self.specs.iter().filter(|s| !skipped.contains(&s.name)) {
            let read = tokio::time::timeout(READ_WAIT, self.target.read_node(self.scenario, spec))
                .await
                .unwrap_or_else(|_| Err(format!("no reply within {READ_WAIT:?}")))
                .map_err(|e| format!("{}: {e}", spec.name))?;
            found.push(format!("{}: {}", spec.name, check_read(&spec.name, &read, &self.acked)?));
        }
        Ok(found.join("; "))
    }

    /// Protocol 2's `failover`, when hello declared it: SIGKILL the leader
    /// (else the first node) and keep it down, as `restart = false` does in
    /// a run, ask `failover`, wait for `converged`, and read every other
    /// node: each must still hold every acknowledged message.
    async fn failover(&mut self) -> Result<String, NotOk> {
        if !self.hello.as_ref().is_some_and(|h| h.failover) {
            return Err(NotOk::Skip("hello did not say failover: true (a protocol 2 option)".into()));
        }
        if self.acked.is_empty() {
            return Err(NotOk::Skip("no acknowledged publish to look for".into()));
        }
        if self.specs.len() < 2 || self.target.read_back_mode() == jetsam_targets::ReadBack::AfterStop {
            return Err(NotOk::Skip("needs 2 or more nodes still running after read (read_back = live)".into()));
        }
        let down = match self.target.leader(&self.specs).await {
            Some(leader) => leader,
            None => self.specs[0].name.clone(),
        };
        self.cluster.kill(&down, &self.events, Vec::new()).map_err(|e| format!("SIGKILL of {down}: {e}"))?;
        self.cluster.keep_down(&down);
        let t = Instant::now();
        let kept = vec![down.clone()];
        let answer = tokio::time::timeout(
            crate::run::FAILOVER_TIMEOUT,
            self.target.failover(&self.specs, &kept, crate::run::FAILOVER_TIMEOUT),
        )
        .await
        .unwrap_or_else(|_| Some(Err(format!("no reply within {:?}", crate::run::FAILOVER_TIMEOUT))));
        let f = match answer {
            Some(Ok(f)) => f,
            Some(Err(e)) => return Err(NotOk::Fail(format!("{down} killed and kept down; failover: {e}"))),
            None => return Err(NotOk::Fail("hello said failover: true but no failover was made".into())),
        };
        let failover_ms = t.elapsed().as_millis();
        self.target
            .wait_converged(self.scenario, &self.specs, WAIT)
            .await
            .map_err(|e| format!("converged after the failover: {e}"))?;
        let reads = self.read_each(&kept).await?;
        Ok(format!(
            "{down} killed and kept down; leader {} in {failover_ms} ms ({}); converged; {reads}",
            f.leader.as_deref().unwrap_or("not named"),
            f.note
        ))
    }
}

/// The parts that need a running cluster. `Some(code)` when the cluster
/// could not be started (exit 4) or the harness failed.
async fn drive(scenario: &Scenario, target: &AdapterTarget, run_dir: &Path, parts: &mut Parts) -> Option<i32> {
    let env_err = |e: String| {
        eprintln!("error: {e}");
        Some(exit::ENVIRONMENT)
    };
    let events = match EventLog::create(&run_dir.join(jetsam_checkers::load::EVENTS_FILE), Instant::now()) {
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
    let mut session = Session {
        scenario,
        target,
        run_dir,
        cluster,
        events,
        specs,
        hello: None,
        publisher: None,
        acked: BTreeMap::new(),
    };
    let mut code = None;
    for (i, part) in PARTS.iter().enumerate() {
        let outcome = session.part(part).await;
        // Once the adapter broke the protocol (in any of its processes) no
        // later answer can be trusted: that part fails with it, the rest are skipped.
        let fatal = target.fatal();
        let stop = match (outcome, &fatal) {
            (Err(NotOk::Environment(e)), _) => {
                code = env_err(e);
                break;
            }
            (_, Some(f)) => {
                parts.fail(part, f);
                Some("the adapter broke the protocol (see above)".to_string())
            }
            (Ok(d), None) => {
                parts.ok(part, d);
                None
            }
            (Err(NotOk::Skip(why)), None) => {
                parts.skip(part, &why);
                None
            }
            (Err(NotOk::Fail(e)), None) => {
                parts.fail(part, e);
                ESSENTIAL.contains(part).then(|| format!("needs {part}"))
            }
        };
        if let Some(why) = stop {
            for later in &PARTS[i + 1..] {
                parts.skip(later, &why);
            }
            break;
        }
    }
    let _ = session.cluster.stop_all();
    session.cluster.shutdown_proxies().await;
    code
}
