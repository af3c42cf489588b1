//! What a check is decided against: the consistency mode, the async loss
//! window bound, the expected nodes and the stream's replica count, resolved
//! from `scenario.resolved.toml` (when there is one) and command-line
//! overrides (which win).
//!
//! The async bound, unless `check.window_bound` or `--window-bound` sets it:
//! - `stream.sync` is an interval (e.g. `"2m"`): the interval plus
//!   [`WINDOW_SLACK`] (a flush that starts at the interval's end still takes
//!   a moment, and acks race the timer);
//! - `stream.sync = "always"`, or unset, or no scenario: [`WINDOW_SLACK`]
//!   alone. With "always" only writes in flight at the fault may go; with no
//!   sync setting the checker cannot know the target's default, and guessing
//!   long would risk a false pass, so it guesses short: set
//!   `check.window_bound` to say what is acceptable.
//!
//! This module does not read files; [`crate::load`] does.

use jetsam_core::duration::{format_duration, parse_duration};
use jetsam_core::report::Mode;
use jetsam_core::scenario::Scenario;
use std::time::Duration;

/// Added to the sync interval for the default async bound; also the whole
/// bound when there is no interval.
pub const WINDOW_SLACK: Duration = Duration::from_secs(1);

/// Command-line settings that override the scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub mode: Option<Mode>,
    pub window_bound: Option<Duration>,
    pub nodes: Option<Vec<String>>,
}

/// Everything a check is decided against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    pub mode: Mode,
    /// The async loss-window bound.
    pub window_bound: Duration,
    /// Where the bound came from, for the report's reasons.
    pub window_bound_source: String,
    /// Every node of the run, in order; a node without a read-back file is
    /// unreadable.
    pub nodes: Vec<String>,
    /// The stream's replica count, when known.
    pub replicas: Option<u32>,
}

/// A scenario setting the checker cannot use. User error (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "failed to read stream.sync = {value:?} in {file}: it is neither \"always\" nor a duration ({why}); fix the scenario or pass --window-bound"
    )]
    Sync { file: String, value: String, why: String },
    #[error(
        "failed to use {file}: format_version {found} is not {expected}; check it with a jetsam that reads that version"
    )]
    Version { file: String, found: u32, expected: u32 },
    #[error("failed to use --nodes: {why}; pass node names separated by commas, e.g. --nodes n1,n2,n3")]
    Nodes { why: String },
}

impl CheckConfig {
    /// Resolves the config. `scenario` is the parsed resolved scenario and
    /// its file name; `present` lists the node names that have a read-back
    /// file, used for the node list when neither the scenario nor the flags
    /// give one.
    pub fn resolve(
        scenario: Option<(&str, &Scenario)>,
        overrides: &Overrides,
        present: &[String],
    ) -> Result<CheckConfig, ConfigError> {
        if let Some((file, s)) = scenario
            && let Some(found) = s.format_version
            && found != jetsam_core::FORMAT_VERSION
        {
            return Err(ConfigError::Version { file: file.to_string(), found, expected: jetsam_core::FORMAT_VERSION });
        }
        let mode = overrides.mode.or(scenario.map(|(_, s)| s.stream.mode())).unwrap_or_default();
        let (window_bound, window_bound_source) = if let Some(b) = overrides.window_bound {
            (b, format!("--window-bound {}", format_duration(b)))
        } else if let Some(b) = scenario.and_then(|(_, s)| s.check.window_bound) {
            (b, format!("check.window_bound = {}", format_duration(b)))
        } else {
            match scenario.and_then(|(file, s)| s.stream.sync.as_deref().map(|v| (file, v))) {
                Some((_, "always")) => {
                    (WINDOW_SLACK, format!("stream.sync = \"always\": slack {}", format_duration(WINDOW_SLACK)))
                }
                Some((file, value)) => {
                    let interval = parse_duration(value).map_err(|e| ConfigError::Sync {
                        file: file.to_string(),
                        value: value.to_string(),
                        why: e.why.to_string(),
                    })?;
                    (
                        interval + WINDOW_SLACK,
                        format!(
                            "stream.sync = {} plus slack {}",
                            format_duration(interval),
                            format_duration(WINDOW_SLACK)
                        ),
                    )
                }
                None => (
                    WINDOW_SLACK,
                    format!(
                        "no sync interval known: slack {} only (set check.window_bound or --window-bound)",
                        format_duration(WINDOW_SLACK)
                    ),
                ),
            }
        };
        let nodes = match (&overrides.nodes, scenario) {
            (Some(nodes), _) => {
                let mut seen = std::collections::BTreeSet::new();
                for n in nodes {
                    if n.is_empty() || n.contains(['/', '\\']) || n == "cluster" {
                        return Err(ConfigError::Nodes { why: format!("{n:?} is not a node name") });
                    }
                    if !seen.insert(n) {
                        return Err(ConfigError::Nodes { why: format!("{n:?} is listed twice") });
                    }
                }
                nodes.clone()
            }
            (None, Some((_, s))) => s.node_names(),
            (None, None) => present.to_vec(),
        };
        let replicas = scenario.map(|(_, s)| s.stream.replicas);
        Ok(CheckConfig { mode, window_bound, window_bound_source, nodes, replicas })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(sync: Option<&str>, bound: Option<&str>, mode: &str) -> Scenario {
        let mut text =
            format!("name = \"s\"\nnodes = 3\nduration = \"1s\"\n[stream]\nreplicas = 1\nconsistency = \"{mode}\"\n");
        if let Some(s) = sync {
            text += &format!("sync = \"{s}\"\n");
        }
        if let Some(b) = bound {
            text += &format!("[check]\nwindow_bound = \"{b}\"\n");
        }
        Scenario::from_toml_str("s.toml", &text).unwrap()
    }

    fn bound(s: Option<&Scenario>, o: &Overrides) -> Duration {
        CheckConfig::resolve(s.map(|s| ("s.toml", s)), o, &[]).unwrap().window_bound
    }

    #[test]
    fn window_bound_defaults_and_overrides() {
        let none = Overrides::default();
        assert_eq!(bound(Some(&scenario(Some("2m"), None, "async")), &none), Duration::from_secs(121));
        assert_eq!(bound(Some(&scenario(Some("always"), None, "async")), &none), WINDOW_SLACK);
        assert_eq!(bound(Some(&scenario(None, None, "async")), &none), WINDOW_SLACK);
        assert_eq!(bound(None, &none), WINDOW_SLACK);
        assert_eq!(bound(Some(&scenario(Some("2m"), Some("5s"), "async")), &none), Duration::from_secs(5));
        let flag = Overrides { window_bound: Some(Duration::from_millis(250)), ..Overrides::default() };
        assert_eq!(bound(Some(&scenario(Some("2m"), Some("5s"), "async")), &flag), Duration::from_millis(250));
        let bad = scenario(Some("sometimes"), None, "async");
        let err = CheckConfig::resolve(Some(("s.toml", &bad)), &none, &[]).unwrap_err();
        assert!(err.to_string().contains("stream.sync = \"sometimes\""), "{err}");
    }

    #[test]
    fn mode_and_nodes_come_from_flags_then_scenario_then_files() {
        let s = scenario(None, None, "async");
        let present = vec!["a".to_string(), "b".to_string()];
        let c = CheckConfig::resolve(Some(("s.toml", &s)), &Overrides::default(), &present).unwrap();
        assert_eq!(
            (c.mode, c.nodes.clone(), c.replicas),
            (Mode::Async, vec!["n1".into(), "n2".into(), "n3".into()], Some(1))
        );
        let c = CheckConfig::resolve(None, &Overrides::default(), &present).unwrap();
        assert_eq!((c.mode, c.nodes.clone(), c.replicas), (Mode::Strong, present.clone(), None));
        let o = Overrides { mode: Some(Mode::Strong), nodes: Some(vec!["x".into()]), ..Overrides::default() };
        let c = CheckConfig::resolve(Some(("s.toml", &s)), &o, &present).unwrap();
        assert_eq!((c.mode, c.nodes), (Mode::Strong, vec!["x".to_string()]));
        let dup = Overrides { nodes: Some(vec!["x".into(), "x".into()]), ..Overrides::default() };
        assert!(CheckConfig::resolve(None, &dup, &present).is_err());
    }
}
