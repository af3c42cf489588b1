//! Event triggers of faults (`on = "..."` in a fault line): instead of a
//! time, a fault fires on something the system or the workload does.
//!
//! | spelling | fires |
//! |---|---|
//! | `acks:K` | when the workload's K-th acknowledged write is acked |
//! | `leader-change` / `leader-change:K` | when the stream's leader moves for the (K-th) time |
//! | `fsync:NODE:K` | right after NODE's K-th data-file fsync returns (the power-loss tracer counts) |
//! | `behind:NODE:K` | when NODE is at least K entries behind the leader |
//!
//! Counting starts when the load starts. A trigger fires once.

use std::fmt;
use std::str::FromStr;

/// What a fault line waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Acks(u64),
    LeaderChange(u64),
    Fsync { node: String, count: u64 },
    Behind { node: String, entries: u64 },
}

/// Every trigger's name, as written before the first `:`.
pub const TRIGGER_NAMES: &[&str] = &["acks", "leader-change", "fsync", "behind"];

impl Trigger {
    /// The trigger's name (`acks`, `leader-change`, `fsync`, `behind`).
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Acks(_) => "acks",
            Trigger::LeaderChange(_) => "leader-change",
            Trigger::Fsync { .. } => "fsync",
            Trigger::Behind { .. } => "behind",
        }
    }

    /// The node the trigger watches, if it watches one.
    pub fn node(&self) -> Option<&str> {
        match self {
            Trigger::Fsync { node, .. } | Trigger::Behind { node, .. } => Some(node),
            Trigger::Acks(_) | Trigger::LeaderChange(_) => None,
        }
    }
}

/// Why an `on` value is not a trigger (the message completes "failed to read `on`: ...").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TriggerError(pub String);

fn count(text: &str, what: &str, whole: &str) -> Result<u64, TriggerError> {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(TriggerError(format!("{what} in {whole:?} must be a whole number of at least 1, not {text:?}"))),
    }
}

impl FromStr for Trigger {
    type Err = TriggerError;

    fn from_str(s: &str) -> Result<Trigger, TriggerError> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["acks", k] => Ok(Trigger::Acks(count(k, "the ack count", s)?)),
            ["leader-change"] => Ok(Trigger::LeaderChange(1)),
            ["leader-change", k] => Ok(Trigger::LeaderChange(count(k, "the change count", s)?)),
            ["fsync", node, k] if !node.is_empty() => {
                Ok(Trigger::Fsync { node: node.to_string(), count: count(k, "the fsync count", s)? })
            }
            ["behind", node, k] if !node.is_empty() => {
                Ok(Trigger::Behind { node: node.to_string(), entries: count(k, "the entry count", s)? })
            }
            [name, ..] if TRIGGER_NAMES.contains(name) => Err(TriggerError(format!(
                "{s:?} is not a {name} trigger: write acks:K, leader-change[:K], fsync:NODE:K or behind:NODE:K"
            ))),
            _ => Err(TriggerError(format!(
                "unknown event {s:?}: write acks:K, leader-change[:K], fsync:NODE:K or behind:NODE:K"
            ))),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Acks(k) => write!(f, "acks:{k}"),
            Trigger::LeaderChange(1) => write!(f, "leader-change"),
            Trigger::LeaderChange(k) => write!(f, "leader-change:{k}"),
            Trigger::Fsync { node, count } => write!(f, "fsync:{node}:{count}"),
            Trigger::Behind { node, entries } => write!(f, "behind:{node}:{entries}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_spelling() {
        for text in ["acks:5000", "leader-change", "leader-change:3", "fsync:n3:40", "behind:n2:1000"] {
            let t: Trigger = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
        }
        assert_eq!("leader-change:1".parse::<Trigger>().unwrap().to_string(), "leader-change");
        assert_eq!("fsync:n3:40".parse::<Trigger>().unwrap().node(), Some("n3"));
    }

    #[test]
    fn rejects_with_what_to_write() {
        for (text, says) in [
            ("acks:0", "at least 1"),
            ("acks", "not a acks trigger"),
            ("acks:x", "whole number"),
            ("fsync:n3", "not a fsync trigger"),
            ("fsync::4", "not a fsync trigger"),
            ("leader", "unknown event"),
            ("commit:5", "unknown event"),
        ] {
            let e = text.parse::<Trigger>().unwrap_err();
            assert!(e.0.contains(says), "{text}: {e}");
        }
    }
}
