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

use crate::cluster::Cluster;
use crate::events::EventLog;
use crate::progress::Progress;
use crate::run::{RunError, write};
use jetsam_core::recovered::{CLUSTER_FILE, Placement, REPLICAS_FILE, RecoveredMsg, UNREADABLE_SUFFIX};
use jetsam_core::scenario::Scenario;
use jetsam_targets::{ReadBack, Target};
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
    let is_replica = |name: &str| replicas.as_ref().is_none_or(|r| r.iter().any(|n| n == name));
    for spec in cluster.specs().iter().filter(|s| is_replica(&s.name)) {
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
                progress.line(&format!("warning: {} unreadable: {reason}", spec.name));
                write(&recovered.join(format!("{}{UNREADABLE_SUFFIX}", spec.name)), &format!("{reason}\n"))?;
            }
        }
    }
    if target.read_back_mode() == ReadBack::Live {
        stop_all(cluster, progress);
    }
    Ok(())
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

/// Reads with the bound [`READ_TIMEOUT`]; a timeout becomes the unreadable reason.
async fn read_bounded<T>(read: impl std::future::Future<Output = Result<T, String>>, what: &str) -> Result<T, String> {
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Err(format!("read-back of {what} gave no answer within {}s", READ_TIMEOUT.as_secs())),
    }
}

fn stop_all(cluster: &mut Cluster, progress: &Progress) {
    for (node, e) in cluster.stop_all() {
        progress.line(&format!("warning: stopping {node}: {e}"));
    }
}

fn write_recovered(path: &Path, msgs: &[RecoveredMsg]) -> Result<(), RunError> {
    let mut text = String::with_capacity(msgs.len() * 24);
    for m in msgs {
        text.push_str(&serde_json::to_string(m).expect("a message always serializes"));
        text.push('\n');
    }
    write(path, &text)
}
