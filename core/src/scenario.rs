//! Scenario files (`scenarios/*.toml`, specified in docs/scenarios.md) and
//! their resolved form (`scenario.resolved.toml` in a run folder: the same
//! schema with the seed and every default filled in, enough to replay the
//! run). Parsing rejects unknown keys and bad values; rules that depend on
//! the target (e.g. `async` with replicas > 1), and which options belong to
//! which fault kind, are checked by the harness (`jetsam run`) with the
//! target's `Target::validate`.

use crate::duration::serde_human;
use crate::report::Mode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Format version of the resolved file; absent in hand-written scenarios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u32>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub target: Target,
    /// Number of nodes in the cluster.
    pub nodes: u32,
    /// How long the load and fault phase lasts.
    #[serde(with = "serde_human")]
    pub duration: Duration,
    /// Seed of the whole run; the CLI may override; resolved files always have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub stream: Stream,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub check: Check,
}

/// The system under test and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `node` (the reference node, default), `nats` or `adapter`.
    #[serde(default = "default_target_kind")]
    pub kind: String,
    /// Reference node only: a deliberate bug to switch on (see docs/node.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bug: Option<String>,
    /// NATS only: the nats-server version to run (e.g. "2.12.1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Reference node only: start every node with `--repair`, so a node that
    /// finds its log damaged wipes it and catches up without voting instead
    /// of stopping (see docs/node.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
    /// Adapter targets only: the target file (docs/adapter-protocol.md),
    /// relative to the directory jetsam runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Adapter targets only: values of the target file's own `[settings]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

fn default_target_kind() -> String {
    "node".to_string()
}

impl Default for Target {
    fn default() -> Self {
        Target {
            kind: default_target_kind(),
            bug: None,
            version: None,
            repair: false,
            file: None,
            settings: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    pub replicas: u32,
    /// Unset means `strong` (as the ADR says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Mode>,
    /// `"always"` or an interval such as `"2m"`; unset = the target's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
}

impl Stream {
    pub fn mode(&self) -> Mode {
        self.consistency.unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    #[serde(default = "default_clients")]
    pub clients: u32,
    /// Publishes per second over all clients; unset = as fast as acks come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    #[serde(default = "default_payload_bytes")]
    pub payload_bytes: u32,
    /// A publish with no answer by then is recorded as `info`.
    #[serde(with = "serde_human", default = "default_timeout")]
    pub timeout: Duration,
    /// Publishes one client keeps in flight at most (pipelining).
    #[serde(default = "default_in_flight")]
    pub in_flight: u32,
}

fn default_in_flight() -> u32 {
    8
}

fn default_clients() -> u32 {
    4
}

fn default_payload_bytes() -> u32 {
    128
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: default_clients(),
            rate: None,
            payload_bytes: default_payload_bytes(),
            timeout: default_timeout(),
            in_flight: default_in_flight(),
        }
    }
}

/// One fault line of the scenario. Kind-specific options are optional fields
/// collected in `options`; the harness (`jetsam run`) says which belong to
/// which kind and rejects the rest. (No `deny_unknown_fields` here: with a
/// flattened table serde would reject every option.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// `kill`, `pause`, `power-loss`, `partition`, `bitflip`, `truncate`, `io-error`.
    pub kind: String,
    /// `one`, `minority`, `majority`, `all`, `leader`, or a list of node names.
    #[serde(default = "default_targets")]
    pub targets: Targets,
    /// Inject every this long (first after one interval) ...
    #[serde(default, with = "serde_human::option", skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// ... or at these fixed times since the load started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<String>,
    /// ... or once, when this event happens (see [`crate::trigger`]), e.g.
    /// `acks:5000`, `leader-change`, `fsync:n3:40`, `behind:n3:1000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// With `on`: how long after the event the fault fires (default 0).
    #[serde(default, with = "serde_human::option", skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// How long the fault lasts before its heal.
    #[serde(default, with = "serde_human::option", skip_serializing_if = "Option::is_none")]
    pub heal_after: Option<Duration>,
    /// Other kind-specific options (partition shape, file glob, bits per file,
    /// power-loss discard model, ...), validated per kind.
    #[serde(flatten)]
    pub options: toml::Table,
}

impl Fault {
    /// The event this line fires on, when it has a valid `on` (validation
    /// rejects an invalid one before anything runs).
    pub fn trigger(&self) -> Option<crate::trigger::Trigger> {
        self.on.as_deref()?.parse().ok()
    }

    /// The node whose tracer an `fsync:NODE:K` line arms.
    pub fn fsync_watched(&self) -> Option<String> {
        match self.trigger()? {
            crate::trigger::Trigger::Fsync { node, .. } => Some(node),
            _ => None,
        }
    }
}

fn default_targets() -> Targets {
    Targets::Named("one".to_string())
}

/// Which nodes a fault hits: a selector word or explicit node names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    Named(String),
    Nodes(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Longest acceptable loss window in `async` mode; unset = the sync
    /// interval plus slack.
    #[serde(default, with = "serde_human::option", skip_serializing_if = "Option::is_none")]
    pub window_bound: Option<Duration>,
    /// `pass` or `fail`: what this scenario exists to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// The durability audit: trace every node and say, for each
    /// acknowledged write, whether a majority had synced it before the ack.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Pass,
    Fail,
}

/// A scenario file that cannot be used. User error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("failed to parse scenario {file}: {message}")]
    Parse { file: String, message: String },
    #[error("invalid scenario {file}{}: {message}; fix: {fix}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { file: String, line: Option<usize>, message: String, fix: String },
}

impl Scenario {
    /// Parses scenario TOML; `file` names it in errors (serde's message
    /// carries the line and column).
    pub fn from_toml_str(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        toml::from_str(text).map_err(|e| ScenarioError::Parse { file: file.to_string(), message: e.to_string() })
    }

    /// Node names, `n1` .. `nN`.
    pub fn node_names(&self) -> Vec<String> {
        node_names(self.nodes)
    }
}

/// A plain name (letters, digits, `-`, `_`, `.`): scenario names become
/// results folders, target names appear in every adapter error.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Node names `n1` .. `nN`, the naming every target uses.
pub fn node_names(count: u32) -> Vec<String> {
    (1..=count).map(|i| format!("n{i}")).collect()
}
