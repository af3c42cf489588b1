//! The read-back phase of `jetsam run` (DESIGN.md "One run", step 5): the
//! cluster view through the leader into `recovered/cluster.jsonl`, then
//! every node's own storage into `recovered/<node>.jsonl`, or
//! `recovered/<node>.unreadable` with the reason; the nodes are stopped
//! before (after-stop targets) or after (live targets) the node reads.

use crate::cluster::Cluster;
use crate::events::EventLog;
use crate::progress::Progress;
use crate::run::{READ_TIMEOUT, RunError, write};
use jetsam_core::recovered::{CLUSTER_FILE, RecoveredMsg, UNREADABLE_SUFFIX};
use jetsam_core::scenario::Scenario;
use jetsam_targets::{ReadBack, Target};
use std::path::Path;

/// Reads back the cluster view and every node's own copy into `recovered/`,
/// stopping the nodes before (after-stop targets) or after (live targets).
pub(crate) async fn read_back(
    scenario: &Scenario,
    cluster: &mut Cluster,
    target: &dyn Target,
    run_dir: &Path,
    events: &EventLog,
    progress: &Progress,
) -> Result<(), RunError> {
    progress.phase("read", "reading back every node");
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
    if target.read_back_mode() == ReadBack::AfterStop {
        stop_all(cluster, progress);
    }
    if target.read_back_mode() == ReadBack::Live {
        // A node that died after the final heal cannot answer: say so in its reason.
        for name in cluster.names() {
            cluster.check_alive(&name, events)?;
        }
    }
    for spec in cluster.specs() {
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
