//! Lists a run folder (docs/formats.md) and checks that its files make
//! sense together, before any of them is read: a `recovered/*.jsonl`,
//! `*.unreadable` or `*.offline` of a node that is not in the run (or not a
//! replica of a known placement), both a `.jsonl` and an `.unreadable` for
//! one node, an `.offline` without a `.jsonl`, or a file present in both
//! forms (`.jsonl` and `.bin`), is an error rather than something to guess
//! about. The result, a [`RunPlan`], is what both engines start from: the
//! in-memory one ([`crate::load::read_plan`]) and the streaming one
//! ([`crate::stream`]).

use crate::config::{CheckConfig, Overrides};
use crate::data::History;
use crate::load::{
    CLUSTER_COMPACT_FILE, COMPACT_SUFFIX, EVENTS_FILE, LoadRunError, RECOVERED_DIR, SCENARIO_FILE, load_events,
    load_history, load_history_compact,
};
use crate::placement::Judged;
use jetsam_core::event::Event;
use jetsam_core::jsonl::LoadError;
use jetsam_core::recovered::{CLUSTER_FILE, OFFLINE_SUFFIX, Placement, REPLICAS_FILE, UNREADABLE_SUFFIX};
use jetsam_core::scenario::Scenario;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Node names by recovered file kind, each in name order.
#[derive(Debug, Default)]
struct Listed {
    /// Nodes with a read-back, in either form.
    jsonl: BTreeSet<String>,
    /// Of those, the ones whose read-back is compact (`.bin`).
    compact: BTreeSet<String>,
    unreadable: BTreeSet<String>,
    offline: BTreeSet<String>,
}

fn read_to_string(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })
}

fn both_forms(dir: &Path, node: &str) -> LoadRunError {
    LoadRunError::BothForms {
        dir: dir.to_path_buf(),
        a: format!("{RECOVERED_DIR}/{node}.jsonl"),
        b: format!("{RECOVERED_DIR}/{node}{COMPACT_SUFFIX}"),
    }
}

/// Node names with a `recovered/<node>.jsonl`, a `.unreadable` and an `.offline`.
fn list_recovered(dir: &Path) -> Result<Listed, LoadRunError> {
    let recovered = dir.join(RECOVERED_DIR);
    let mut listed = Listed::default();
    if !recovered.is_dir() {
        return Ok(listed);
    }
    let list = |source| LoadRunError::List { path: recovered.clone(), source };
    for entry in std::fs::read_dir(&recovered).map_err(list)? {
        let name = entry.map_err(list)?.file_name().to_string_lossy().into_owned();
        if name == CLUSTER_FILE || name == CLUSTER_COMPACT_FILE {
            continue;
        }
        if let Some(node) = name.strip_suffix(".jsonl") {
            if listed.compact.contains(node) {
                return Err(both_forms(dir, node));
            }
            listed.jsonl.insert(node.to_string());
        } else if let Some(node) = name.strip_suffix(COMPACT_SUFFIX) {
            if !listed.compact.insert(node.to_string()) || !listed.jsonl.insert(node.to_string()) {
                return Err(both_forms(dir, node));
            }
        } else if let Some(node) = name.strip_suffix(UNREADABLE_SUFFIX) {
            listed.unreadable.insert(node.to_string());
        } else if let Some(node) = name.strip_suffix(OFFLINE_SUFFIX) {
            listed.offline.insert(node.to_string());
        }
    }
    Ok(listed)
}

impl Listed {
    /// Every listed file as (node, suffix): `.jsonl`, then `.unreadable`, then `.offline`.
    fn files(&self) -> impl Iterator<Item = (&String, &'static str)> {
        let files = self.jsonl.iter().map(|n| (n, ".jsonl"));
        let files = files.chain(self.unreadable.iter().map(|n| (n, UNREADABLE_SUFFIX)));
        files.chain(self.offline.iter().map(|n| (n, OFFLINE_SUFFIX)))
    }
}

/// Rejects recovered files of nodes not in the run and contradicting files.
fn check_listed(dir: &Path, listed: &Listed, nodes: &[String]) -> Result<(), LoadRunError> {
    let expected: BTreeSet<&String> = nodes.iter().collect();
    for (node, suffix) in listed.files() {
        if !expected.contains(node) {
            return Err(LoadRunError::StrayFile {
                dir: dir.to_path_buf(),
                file: Path::new(RECOVERED_DIR).join(format!("{node}{suffix}")),
                nodes: nodes.join(","),
            });
        }
        if listed.jsonl.contains(node) && listed.unreadable.contains(node) {
            return Err(LoadRunError::Contradiction { dir: dir.to_path_buf(), node: node.clone() });
        }
        if listed.offline.contains(node) && !listed.jsonl.contains(node) {
            return Err(LoadRunError::OfflineWithoutRead { dir: dir.to_path_buf(), node: node.clone() });
        }
    }
    Ok(())
}

/// The first line of a recovered note file, trimmed, or `empty` when blank.
fn first_line(path: &Path, empty: &str) -> Result<String, LoadError> {
    let text = read_to_string(path)?;
    let line = text.lines().next().unwrap_or("").trim();
    Ok(if line.is_empty() { empty.to_string() } else { line.to_string() })
}

/// Rejects recovered files of nodes that a known placement does not name.
fn check_replicas(dir: &Path, listed: &Listed, judged: &Judged) -> Result<(), LoadRunError> {
    for (node, suffix) in listed.files() {
        if !judged.judges(node) {
            return Err(LoadRunError::NotAReplica {
                dir: dir.to_path_buf(),
                file: Path::new(RECOVERED_DIR).join(format!("{node}{suffix}")),
                node: node.clone(),
                replicas: judged.replicas().unwrap_or_default().join(","),
            });
        }
    }
    Ok(())
}

/// Reads `recovered/replicas.json` when there is one ([`crate::placement`]).
fn load_placement(dir: &Path, nodes: &[String]) -> Result<Judged, LoadRunError> {
    let path = dir.join(RECOVERED_DIR).join(REPLICAS_FILE);
    if !path.exists() {
        return Ok(Judged::AllNodes);
    }
    let text = read_to_string(&path)?;
    let invalid = |why: String| LoadRunError::Placement { dir: dir.to_path_buf(), why };
    let placement: Placement = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    placement.validate(nodes).map_err(invalid)?;
    Ok(Judged::from_placement(placement))
}

/// Where a judged node's read-back is, or why there is none.
#[derive(Debug, Clone)]
pub enum NodePlan {
    /// `recovered/<node>.jsonl` or `.bin`; `offline` is the first line of
    /// `recovered/<node>.offline` when the node was read from its files.
    Read {
        path: PathBuf,
        offline: Option<String>,
    },
    Unreadable {
        reason: String,
    },
}

/// A run folder's files, listed and cross-checked but not yet read: what
/// both the in-memory check ([`load_run`]) and the streaming one
/// ([`crate::stream`]) start from.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// `history.jsonl` or `history.bin` (by its extension).
    pub history: PathBuf,
    pub events: Option<PathBuf>,
    /// Every judged node by name.
    pub nodes: BTreeMap<String, NodePlan>,
    /// `recovered/cluster.jsonl` or `.bin`.
    pub cluster: Option<PathBuf>,
    pub judged: Judged,
}

impl RunPlan {
    /// Reads the history in its form.
    pub fn load_history(&self) -> Result<History, LoadError> {
        if crate::forms::is_compact(&self.history) {
            load_history_compact(&self.history)
        } else {
            load_history(&self.history)
        }
    }

    /// Reads `events.jsonl`, or none when the folder has no such file.
    pub fn load_events(&self) -> Result<Vec<Event>, LoadError> {
        self.events.as_deref().map_or_else(|| Ok(Vec::new()), load_events)
    }
}

/// Lists a run folder and checks that its files make sense together (see
/// the module doc); reads only the scenario, the placement and the notes of
/// `.unreadable` and `.offline` files. `overrides` (the command line) win
/// over the scenario.
pub fn plan_run(dir: &Path, overrides: &Overrides) -> Result<(RunPlan, CheckConfig), LoadRunError> {
    if !dir.is_dir() {
        return Err(LoadRunError::NotAFolder { dir: dir.to_path_buf() });
    }
    let scenario_path = dir.join(SCENARIO_FILE);
    let scenario = if scenario_path.exists() {
        let text = read_to_string(&scenario_path)?;
        Some(Scenario::from_toml_str(&scenario_path.display().to_string(), &text)?)
    } else {
        None
    };
    let listed = list_recovered(dir)?;
    let present: Vec<String> = listed.jsonl.iter().cloned().collect();
    let scenario_file = scenario_path.display().to_string();
    let config = CheckConfig::resolve(scenario.as_ref().map(|s| (scenario_file.as_str(), s)), overrides, &present)?;
    check_listed(dir, &listed, &config.nodes)?;
    let judged = load_placement(dir, &config.nodes)?;
    check_replicas(dir, &listed, &judged)?;

    let history = crate::forms::history_file(dir)?;
    let events_path = dir.join(EVENTS_FILE);
    let events = events_path.exists().then_some(events_path);

    let recovered = dir.join(RECOVERED_DIR);
    let mut nodes = BTreeMap::new();
    for node in config.nodes.iter().filter(|n| judged.judges(n)) {
        let plan = if listed.jsonl.contains(node) {
            let suffix = if listed.compact.contains(node) { COMPACT_SUFFIX } else { ".jsonl" };
            let offline = if listed.offline.contains(node) {
                let path = recovered.join(format!("{node}{OFFLINE_SUFFIX}"));
                Some(first_line(&path, "no note given (empty .offline file)")?)
            } else {
                None
            };
            NodePlan::Read { path: recovered.join(format!("{node}{suffix}")), offline }
        } else if listed.unreadable.contains(node) {
            let path = recovered.join(format!("{node}{UNREADABLE_SUFFIX}"));
            NodePlan::Unreadable { reason: first_line(&path, "no reason given (empty .unreadable file)")? }
        } else {
            NodePlan::Unreadable { reason: "no read-back file".to_string() }
        };
        nodes.insert(node.clone(), plan);
    }
    let cluster_path = recovered.join(CLUSTER_FILE);
    let cluster_compact = recovered.join(CLUSTER_COMPACT_FILE);
    let cluster = match (cluster_path.exists(), cluster_compact.exists()) {
        (true, true) => return Err(both_forms(dir, "cluster")),
        (true, false) => Some(cluster_path),
        (false, true) => Some(cluster_compact),
        (false, false) => None,
    };
    let judged_count = config.nodes.iter().filter(|n| judged.judges(n)).count();
    assert_eq!(nodes.len(), judged_count, "every judged node is readable or unreadable");
    Ok((RunPlan { history, events, nodes, cluster, judged }, config))
}
