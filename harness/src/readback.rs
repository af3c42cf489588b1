//! The read-back phase of `jetsam run` (DESIGN.md "One run", step 5): the
//! cluster view, then every node's own copy into `recovered/`, stopping the
//! nodes before (after-stop targets such as NATS) or after (live targets)
//! reading them.
//!
//! Before the stop it also asks the target which nodes hold the stream
//! (`Target::replica_set`, the final placement) and writes
//! `recovered/replicas.json`: then only those nodes are read back, and the
//! others get no file (docs/formats.md). A target that cannot tell gets no
//! file, and every node is read; one that should know but could not find
//! out gets `"replicas": null` with the reason, every node is read, and the
//! checker's verdict is `unknown`.
//!
//! A node the normal read could not read (down, e.g. it refuses to start
//! on a corrupt log), and a node a fault keeps down (`restart = false`: not
//! asked, since it is down by design), is then read offline when the target can
//! (`Target::read_node_offline`, with every node stopped), marked by
//! `recovered/<node>.offline`; otherwise it gets `recovered/<node>.unreadable`
//! with the reason.

use crate::cluster::Cluster;
use crate::events::EventLog;
use crate::progress::Progress;
use crate::run::{RunError, write};
use jetsam_core::recovered::{CLUSTER_FILE, OFFLINE_SUFFIX, Placement, REPLICAS_FILE, RecoveredMsg, UNREADABLE_SUFFIX};
use jetsam_core::scenario::Scenario;
use jetsam_faults::process::ProcState;
use jetsam_targets::{NodeSpec, ReadBack, Target};
use std::path::Path;
use std::time::Duration;

/// Bound on reading back one node (or the cluster view).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads back the cluster view, the placement and every replica's own copy
/// into `recovered/`, stopping the nodes before (after-stop targets) or
/// after (live targets).
pub(crate) async fn read_back(
    scenario: &Scenario,
    cluster: &mut Cluster,
    target: &dyn Target,
    run_dir: &Path,
    events: &EventLog,
    progress: &Progress,
) -> Result<(), RunError> {
    progress.phase("read", "reading back the cluster view and every replica");
    let recovered = run_dir.join(jetsam_checkers::load::RECOVERED_DIR);
    std::fs::create_dir_all(&recovered).map_err(|source| RunError::Write { path: recovered.clone(), source })?;
    let view = read_bounded(async { Ok(target.read_cluster(scenario, cluster.specs()).await) }, "the cluster view")
        .await
        .unwrap_or_else(|timeout| Some(Err(timeout)));
    if let Some(view) = view {
        match view {
            Ok(msgs) => write_recovered(&recovered.join(CLUSTER_FILE), &msgs)?,
            Err(e) => progress.line(&format!("warning: no cluster view: {e}")),
        }
    }
    let placement = ask_placement(scenario, cluster, target, progress).await;
    if let Some(placement) = &placement {
        write(&recovered.join(REPLICAS_FILE), &placement.to_json_line())?;
    }
    let replicas = placement.and_then(|p| p.replicas);
    if target.read_back_mode() == ReadBack::AfterStop {
        stop_all(cluster, progress);
    }
    if target.read_back_mode() == ReadBack::Live {
        // A node that died after the final heal cannot answer: say so in its reason.
        for name in cluster.names() {
            cluster.check_alive(&name, events)?;
        }
    }
    let failed = read_replicas(scenario, cluster, target, &recovered, replicas.as_deref()).await?;
    let stop_problems = if target.read_back_mode() == ReadBack::Live { stop_all(cluster, progress) } else { vec![] };
    // Every node is stopped now, so files read offline no longer change.
    for (spec, mut reason) in failed {
        // A node still starting when its read failed may have exited on
        // its own since (e.g. refused its log): the stop says so.
        for (_, problem) in stop_problems.iter().filter(|(node, _)| *node == spec.name) {
            reason.push_str(&format!("; when stopped after the read-back: {problem}"));
        }
        read_offline_or_unreadable(scenario, cluster, target, &recovered, &spec, reason, progress).await?;
    }
    Ok(())
}

/// Reads each replica (every node when `replicas` is `None`) through the
/// target; returns the ones that could not be read, with why.
async fn read_replicas(
    scenario: &Scenario,
    cluster: &Cluster,
    target: &dyn Target,
    recovered: &Path,
    replicas: Option<&[String]>,
) -> Result<Vec<(NodeSpec, String)>, RunError> {
    let is_replica = |name: &str| replicas.is_none_or(|r| r.iter().any(|n| n == name));
    let mut failed = Vec::new();
    for spec in cluster.specs().iter().filter(|s| is_replica(&s.name)) {
        if cluster.is_kept_down(&spec.name) {
            let reason = format!("{} is down: a fault with restart = false kept it down to the end", spec.name);
            failed.push((spec.clone(), reason));
            continue;
        }
        match read_bounded(target.read_node(scenario, spec), &spec.name).await {
            Ok(msgs) => write_recovered(&recovered.join(format!("{}.jsonl", spec.name)), &msgs)?,
            Err(reason) => {
                let reason = match cluster.own_exit(&spec.name) {
                    Some(exit) => format!(
                        "{} is down: it exited on its own ({exit}; see nodes/{}.log); {reason}",
                        spec.name, spec.name
                    ),
                    None => reason,
                };
                failed.push((spec.clone(), reason));
            }
        }
    }
    Ok(failed)
}

/// The stream's final placement, or `None` when the target cannot tell. A
/// timeout, or an answer naming nodes the run does not have (a target bug),
/// is an unknown placement with the reason.
async fn ask_placement(
    scenario: &Scenario,
    cluster: &Cluster,
    target: &dyn Target,
    progress: &Progress,
) -> Option<Placement> {
    let answer =
        read_bounded(async { Ok(target.replica_set(scenario, cluster.specs()).await) }, "the stream's placement")
            .await
            .unwrap_or_else(|timeout| Some(Err(timeout)))?;
    let placement = match answer {
        Ok(replicas) => {
            let placement = Placement::known(replicas);
            match placement.validate(&cluster.names()) {
                Ok(()) => placement,
                Err(why) => Placement::unknown(format!("the target named an impossible placement: {why}")),
            }
        }
        Err(why) => Placement::unknown(why),
    };
    match (&placement.replicas, &placement.reason) {
        (Some(replicas), _) => progress.line(&format!("stream placed on {}", replicas.join(", "))),
        (None, why) => progress.line(&format!(
            "warning: the stream's placement is unknown ({}): every node is read back and the verdict will be unknown",
            why.as_deref().unwrap_or_default()
        )),
    }
    Some(placement)
}

/// For a node the target's normal read-back could not read: its files read
/// offline (`recovered/<node>.jsonl` plus the `.offline` marker saying why
/// and how), or, when the target cannot or the read fails, the
/// `.unreadable` file with every reason.
async fn read_offline_or_unreadable(
    scenario: &Scenario,
    cluster: &Cluster,
    target: &dyn Target,
    recovered: &Path,
    spec: &NodeSpec,
    reason: String,
    progress: &Progress,
) -> Result<(), RunError> {
    let name = &spec.name;
    let offline = if cluster.state(name) != ProcState::Stopped {
        Some(Err("not read offline: it could not be stopped, so its files may still change".to_string()))
    } else {
        read_bounded(async { Ok(target.read_node_offline(scenario, spec).await) }, &format!("{name} offline"))
            .await
            .unwrap_or_else(|timeout| Some(Err(timeout)))
    };
    match offline {
        Some(Ok(read)) => {
            let why = format!("{reason}; read offline instead: {}", read.note);
            progress.line(&format!("warning: {name} read offline ({} messages): {why}", read.messages.len()));
            write_recovered(&recovered.join(format!("{name}.jsonl")), &read.messages)?;
            write(&recovered.join(format!("{name}{OFFLINE_SUFFIX}")), &format!("{why}\n"))
        }
        Some(Err(e)) => {
            let reason = format!("{reason}; reading its files offline failed too: {e}");
            progress.line(&format!("warning: {name} unreadable: {reason}"));
            write(&recovered.join(format!("{name}{UNREADABLE_SUFFIX}")), &format!("{reason}\n"))
        }
        None => {
            progress.line(&format!("warning: {name} unreadable: {reason}"));
            write(&recovered.join(format!("{name}{UNREADABLE_SUFFIX}")), &format!("{reason}\n"))
        }
    }
}

/// Reads with the bound [`READ_TIMEOUT`]; a timeout becomes the unreadable reason.
async fn read_bounded<T>(read: impl std::future::Future<Output = Result<T, String>>, what: &str) -> Result<T, String> {
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Err(format!("read-back of {what} gave no answer within {}s", READ_TIMEOUT.as_secs())),
    }
}

/// Stops every node; returns the problems (node, what), each also printed.
fn stop_all(cluster: &mut Cluster, progress: &Progress) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (node, e) in cluster.stop_all() {
        progress.line(&format!("warning: stopping {node}: {e}"));
        problems.push((node, e.to_string()));
    }
    problems
}

fn write_recovered(path: &Path, msgs: &[RecoveredMsg]) -> Result<(), RunError> {
    let mut text = String::with_capacity(msgs.len() * 24);
    for m in msgs {
        text.push_str(&serde_json::to_string(m).expect("a message always serializes"));
        text.push('\n');
    }
    write(path, &text)
}
