//! The phases of one run inside the tokio runtime (DESIGN.md "One run"):
//! start the nodes and wait until they are ready, create the stream, drive
//! the workload while the nemesis injects the faults, heal and fail over,
//! wait for convergence, read back every node and check. `run` resolves the
//! scenario, makes the run folder and prints; this module does the run.

use crate::cluster::{Cluster, ClusterOptions};
use crate::events::EventLog;
use crate::progress::Progress;
use crate::run::{CONVERGE_TIMEOUT, CREATE_TIMEOUT, FAILOVER_TIMEOUT, PUBLISHER_TIMEOUT, READY_TIMEOUT, RunError};
use crate::scenario::Resolved;
use crate::schedule::{self, derive_seed};
use jetsam_core::duration::format_duration;
use jetsam_core::event::EventKind;
use jetsam_core::report::Report;
use jetsam_core::scenario::Scenario;
use jetsam_targets::{Publisher, Target, TargetError};
use jetsam_workloads::{Counters, HistoryWriter, WorkloadConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) async fn phases(
    resolved: &Resolved,
    schedule: &schedule::Schedule,
    target: &dyn Target,
    run_dir: &Path,
    progress: &Progress,
) -> Result<Report, RunError> {
    let scenario = &resolved.scenario;
    // The run clock: history and events count nanoseconds from here (the
    // tracer's audit record counts from the Unix epoch: the same instant).
    let start = Instant::now();
    let start_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let events = Arc::new(EventLog::create(&run_dir.join(jetsam_checkers::load::EVENTS_FILE), start)?);
    let mut cluster = Cluster::prepare(run_dir, scenario, target, ClusterOptions::for_scenario(scenario)).await?;

    progress.phase("start", &format!("starting {} nodes", scenario.nodes));
    let t = Instant::now();
    cluster.start_all()?;
    wait_ready(&mut cluster, target, &events).await?;
    bounded(target.create_stream(scenario, cluster.specs(), CREATE_TIMEOUT), CREATE_TIMEOUT, "create the stream")
        .await?;
    progress.phase("start", &format!("cluster ready and stream created in {}ms", t.elapsed().as_millis()));

    let workload = load_phase(resolved, schedule, &mut cluster, target, run_dir, &events, start, progress).await?;

    progress.phase("heal", "healing every node and waiting for convergence");
    cluster.heal_all(&events)?;
    failover(&cluster, target, &events, progress).await?;
    if let Err(e) = wait_converged_or_exit(scenario, &mut cluster, target, &events).await? {
        // Not fatal: read-back still runs and the checker judges what is there.
        progress.line(&format!("warning: {e}"));
    }

    crate::readback::read_back(scenario, &mut cluster, target, run_dir, &events, progress).await?;
    if scenario.check.audit {
        cluster.export_audit(&run_dir.join(jetsam_checkers::audit::AUDIT_DIR), start_unix_ns)?;
    }
    cluster.shutdown_proxies().await;
    drop(cluster);
    if let Some(why) = target.fatal() {
        return Err(RunError::Adapter(why));
    }

    progress.phase("check", "checking");
    // `auto`: a soak's history is checked by streaming, in bounded memory.
    let (mut report, config) = jetsam_checkers::engine::check_folder(
        run_dir,
        &jetsam_checkers::Overrides::default(),
        jetsam_checkers::engine::Engine::Auto,
    )
    .map_err(|e| RunError::Check(e.to_string()))?;
    report.latency = workload.latency();
    let replicas = config.replicas.unwrap_or(config.nodes.len() as u32);
    jetsam_checkers::audit::apply(run_dir, &mut report, replicas).map_err(RunError::Check)?;
    crate::check::write_report(run_dir, &report).map_err(|e| RunError::Check(e.to_string()))?;
    Ok(report)
}

/// The load phase: the workload's clients publish for the scenario's
/// duration while the nemesis runs the schedule; ends at once when the
/// target's machinery fails (no verdict then).
#[allow(clippy::too_many_arguments)]
async fn load_phase(
    resolved: &Resolved,
    schedule: &schedule::Schedule,
    cluster: &mut Cluster,
    target: &dyn Target,
    run_dir: &Path,
    events: &Arc<EventLog>,
    start: Instant,
    progress: &Progress,
) -> Result<jetsam_workloads::WorkloadResult, RunError> {
    let scenario = &resolved.scenario;
    let publishers = make_publishers(scenario, cluster, target).await?;
    let (writer, sink) = HistoryWriter::spawn(&run_dir.join(jetsam_checkers::load::HISTORY_FILE), start)?;
    let counters = Arc::new(Counters::default());
    let config = WorkloadConfig {
        clients: scenario.workload.clients,
        rate_per_s: scenario.workload.rate,
        payload_bytes: scenario.workload.payload_bytes,
        timeout: scenario.workload.timeout,
        duration: scenario.duration,
        in_flight_max: scenario.workload.in_flight,
        seed: derive_seed(resolved.seed, "workload"),
    };
    progress.phase("load", &format!("{} clients for {}", config.clients, format_duration(config.duration)));
    let ticker = {
        let events = events.clone();
        progress.spawn_load_ticker(scenario.duration, counters.clone(), move || events.faults())
    };
    let load_start = tokio::time::Instant::now();
    let nemesis_load = crate::nemesis::Load { start: load_start, duration: scenario.duration, acked: &counters.acked };
    let load = async {
        tokio::join!(
            jetsam_workloads::run(&config, publishers, sink, counters.clone()),
            crate::nemesis::run(scenario, schedule, cluster, target, events, nemesis_load),
        )
    };
    // An adapter that breaks the protocol ends the load at once: nothing it
    // answers afterwards can be trusted, and the run has no verdict.
    let (workload, nemesis) = tokio::select! {
        done = load => done,
        why = watch_fatal(target) => {
            ticker.abort();
            return Err(RunError::Adapter(why));
        }
    };
    ticker.abort();
    let workload = workload?;
    let nemesis = nemesis?;
    writer.finish().await?;
    let c = &workload.counts;
    progress.phase(
        "load",
        &format!(
            "done: {} invoked, {} acked, {} info, {} failed; {} injections, {} skipped",
            c.invoked, c.acked, c.info, c.failed, nemesis.injected, nemesis.skipped
        ),
    );
    Ok(workload)
}

/// After the final heal, when faults kept nodes down (`restart = false`):
/// the target's failover step, if it has one, bounded by
/// [`FAILOVER_TIMEOUT`] plus slack. What it did is a `failover` event; a
/// failure is a warning (read-back still runs and the checker judges what
/// the nodes hold).
async fn failover(
    cluster: &Cluster,
    target: &dyn Target,
    events: &EventLog,
    progress: &Progress,
) -> Result<(), RunError> {
    let down = cluster.kept_down();
    if down.is_empty() {
        return Ok(());
    }
    let limit = FAILOVER_TIMEOUT + TARGET_SLACK;
    let answer = tokio::time::timeout(limit, target.failover(cluster.specs(), &down, FAILOVER_TIMEOUT))
        .await
        .unwrap_or_else(|_| Some(Err(format!("no answer within {}s", limit.as_secs()))));
    match answer {
        None => progress.line(&format!(
            "{} kept down; the target has no failover step: the others carry on as they are",
            down.join(", ")
        )),
        Some(Ok(f)) => {
            progress.phase(
                "heal",
                &format!("failover for {}: leader {}; {}", down.join(", "), f.leader.as_deref().unwrap_or("?"), f.note),
            );
            let mut details: crate::cluster::Details = vec![("note", f.note.into())];
            if let Some(leader) = f.leader {
                details.push(("leader", leader.into()));
            }
            events.record(EventKind::Failover, down, details)?;
        }
        Some(Err(why)) => {
            let message = format!("failover for {} failed: {why}", down.join(", "));
            progress.line(&format!("warning: {message}"));
            events.record(EventKind::Warning, down, [("message", message.into())])?;
        }
    }
    Ok(())
}

/// One publisher per workload client, each made within [`PUBLISHER_TIMEOUT`].
async fn make_publishers(
    scenario: &Scenario,
    cluster: &Cluster,
    target: &dyn Target,
) -> Result<Vec<Arc<dyn Publisher>>, RunError> {
    let mut publishers: Vec<Arc<dyn Publisher>> = Vec::new();
    for client in 0..scenario.workload.clients {
        let p = tokio::time::timeout(PUBLISHER_TIMEOUT, target.publisher(scenario, cluster.specs(), client))
            .await
            .map_err(|_| TargetError::Timeout {
            action: format!("make publisher {client}"),
            waited: PUBLISHER_TIMEOUT,
            detail: "the target did not answer".into(),
        })??;
        publishers.push(Arc::from(p));
    }
    Ok(publishers)
}

/// How often the load phase looks for a target's fatal error.
const FATAL_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Resolves with the target's fatal error once it has one (never otherwise).
async fn watch_fatal(target: &dyn Target) -> String {
    loop {
        if let Some(why) = target.fatal() {
            return why;
        }
        tokio::time::sleep(FATAL_WATCH_INTERVAL).await;
    }
}

/// Slack the controller allows a target call beyond the limit it was given.
const TARGET_SLACK: Duration = Duration::from_secs(5);

/// A target call that was given `limit`, cut off at `limit` plus
/// [`TARGET_SLACK`] should the target not keep its own bound.
/// How often the convergence wait looks for nodes that died on their own.
const CONVERGE_WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Waits (bounded by [`CONVERGE_TIMEOUT`]) for the replicas to converge after
/// the final heal, and stops waiting as soon as a node exits on its own (e.g.
/// a node that fail-stops on a corrupt log when restarted): replicas cannot
/// all agree while one is down, so waiting out the bound would only cost
/// time. The inner `Err` is the warning to print; the outer one a harness
/// error while watching the nodes.
async fn wait_converged_or_exit(
    scenario: &Scenario,
    cluster: &mut Cluster,
    target: &dyn Target,
    events: &EventLog,
) -> Result<Result<(), String>, RunError> {
    let specs = cluster.specs().to_vec();
    let converged = bounded(
        target.wait_converged(scenario, &specs, CONVERGE_TIMEOUT),
        CONVERGE_TIMEOUT,
        "wait for the replicas to converge",
    );
    tokio::pin!(converged);
    let mut watch = tokio::time::interval(CONVERGE_WATCH_INTERVAL);
    loop {
        tokio::select! {
            outcome = &mut converged => return Ok(outcome.map_err(|e| e.to_string())),
            _ = watch.tick() => {
                for name in cluster.names() {
                    cluster.check_alive(&name, events)?;
                    if let Some(status) = cluster.own_exit(&name) {
                        return Ok(Err(format!(
                            "{name} exited on its own after the final heal ({status}): not waiting for the replicas to converge"
                        )));
                    }
                }
            }
        }
    }
}

async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, TargetError>>,
    limit: Duration,
    action: &str,
) -> Result<T, TargetError> {
    let waited = limit + TARGET_SLACK;
    tokio::time::timeout(waited, call).await.unwrap_or_else(|_| {
        Err(TargetError::Timeout {
            action: action.to_string(),
            waited,
            detail: "the target did not keep its own time limit".into(),
        })
    })
}

/// Waits (bounded by [`READY_TIMEOUT`]) for the target to be ready, and
/// gives up at once when a node process exits during the wait (a binary that
/// fails at start would otherwise cost the whole timeout).
async fn wait_ready(cluster: &mut Cluster, target: &dyn Target, events: &EventLog) -> Result<(), RunError> {
    let specs = cluster.specs().to_vec();
    let ready = bounded(target.wait_ready(&specs, READY_TIMEOUT), READY_TIMEOUT, "wait for the cluster to be ready");
    tokio::pin!(ready);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            result = &mut ready => return Ok(result?),
            _ = poll.tick() => {
                for name in cluster.names() {
                    cluster.check_alive(&name, events)?;
                    if cluster.state(&name) == jetsam_faults::process::ProcState::Stopped {
                        return Err(RunError::NodeExited { node: name });
                    }
                }
            }
        }
    }
}
