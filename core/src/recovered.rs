//! `recovered/<node>.jsonl`: what one node holds after recovery, one message
//! per line in stream order (docs/formats.md "recovered"). A node that could
//! not be read has no such file; `recovered/<node>.unreadable` may then hold
//! one line of text saying why. `recovered/<node>.offline` beside a node's
//! `.jsonl` says its files were read offline. `recovered/cluster.jsonl`, when present, is
//! the stream as a client reads it through the system's normal read path.

use serde::{Deserialize, Serialize};

/// One line of a recovered file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveredMsg {
    pub seq: u64,
    pub id: String,
}

/// One line of a recovered file parsed without copying the id (it borrows
/// from the line unless it contains escapes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveredMsgRef<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
}

/// File name of the cluster view inside `recovered/`.
pub const CLUSTER_FILE: &str = "cluster.jsonl";
/// Suffix of the file that says why a node could not be read.
pub const UNREADABLE_SUFFIX: &str = ".unreadable";
/// Suffix of the marker beside `<node>.jsonl` saying the node's files were
/// read without the node running (the target's offline reader), why, and
/// what could not be read (docs/formats.md).
pub const OFFLINE_SUFFIX: &str = ".offline";

/// Validates recovered lines in file order: sequences strictly increase.
/// (The same id at two sequences is a finding, "duplicated", not a format
/// error; so is an id that was never attempted.)
#[derive(Debug, Default)]
pub struct RecoveredValidator {
    last_seq: Option<u64>,
}

impl RecoveredValidator {
    pub fn check(&mut self, m: &RecoveredMsg) -> Result<(), String> {
        self.check_parts(m.seq, &m.id)
    }

    /// [`RecoveredValidator::check`] for a line parsed without copying
    /// ([`RecoveredMsgRef`]). Same rules.
    pub fn check_parts(&mut self, seq: u64, id: &str) -> Result<(), String> {
        self.check_seq(seq)?;
        if id.is_empty() {
            return Err("empty id".into());
        }
        Ok(())
    }
}

impl RecoveredValidator {
    /// The sequence rule alone, for a message whose id is known not to be
    /// empty (a compact record's `"<client>-<counter>"`).
    pub fn check_seq(&mut self, seq: u64) -> Result<(), String> {
        if let Some(last) = self.last_seq
            && seq <= last
        {
            return Err(format!("out of order: seq {} is not above the previous line's {} (stream order)", seq, last));
        }
        self.last_seq = Some(seq);
        Ok(())
    }
}

/// File name of the stream's placement inside `recovered/`.
pub const REPLICAS_FILE: &str = "replicas.json";

/// `recovered/replicas.json`: which nodes hold the stream at the end of the
/// run, as the target reported it (docs/formats.md). Written by `jetsam run`
/// only for targets that can tell (NATS); without the file every node of
/// the run is taken for a replica.
///
/// Either `{"replicas":["n1","n3","n4"]}` (in name order) or, when the
/// target could not tell, `{"replicas":null,"reason":"..."}`: the checker's
/// verdict is then `unknown` rather than a guess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// The nodes holding the stream; `None` when the target could not tell.
    /// Required, `null` included: a file without the key says nothing.
    #[serde(deserialize_with = "Option::deserialize")]
    pub replicas: Option<Vec<String>>,
    /// Why the placement is unknown (only with `replicas: null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Placement {
    /// A known placement; the names are sorted so the file does not depend
    /// on the order the target listed them in.
    pub fn known(mut replicas: Vec<String>) -> Placement {
        replicas.sort();
        Placement { replicas: Some(replicas), reason: None }
    }

    pub fn unknown(reason: impl Into<String>) -> Placement {
        Placement { replicas: None, reason: Some(reason.into()) }
    }

    /// The file's text: one JSON object and a newline.
    pub fn to_json_line(&self) -> String {
        let mut text = serde_json::to_string(self).expect("a placement always serializes");
        text.push('\n');
        text
    }

    /// Checks the rules of docs/formats.md against the run's `nodes`: a
    /// non-empty list of distinct nodes of the run, or `null` with a
    /// non-empty reason. The error is the "what is wrong" part.
    pub fn validate(&self, nodes: &[String]) -> Result<(), String> {
        match (&self.replicas, &self.reason) {
            (Some(_), Some(_)) => Err("\"reason\" goes only with \"replicas\": null".into()),
            (None, None) => Err("\"replicas\": null needs a \"reason\"".into()),
            (None, Some(reason)) if reason.trim().is_empty() => Err("\"reason\" is empty".into()),
            (None, Some(_)) => Ok(()),
            (Some(replicas), None) => {
                if replicas.is_empty() {
                    return Err("\"replicas\" is empty: a stream has at least one replica".into());
                }
                let mut seen = std::collections::BTreeSet::new();
                for name in replicas {
                    if !nodes.contains(name) {
                        return Err(format!("{name:?} is not a node of this run ({})", nodes.join(",")));
                    }
                    if !seen.insert(name) {
                        return Err(format!("{name:?} is listed twice"));
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        (1..=5).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn placement_file_text_is_fixed() {
        let known = Placement::known(vec!["n4".into(), "n1".into(), "n3".into()]);
        assert_eq!(known.to_json_line(), "{\"replicas\":[\"n1\",\"n3\",\"n4\"]}\n");
        let unknown = Placement::unknown("no node answered");
        assert_eq!(unknown.to_json_line(), "{\"replicas\":null,\"reason\":\"no node answered\"}\n");
        for p in [known, unknown] {
            assert_eq!(serde_json::from_str::<Placement>(&p.to_json_line()).unwrap(), p);
            assert_eq!(p.validate(&nodes()), Ok(()));
        }
    }

    #[test]
    fn placement_rules() {
        let parse = |text: &str| serde_json::from_str::<Placement>(text).map_err(|e| e.to_string());
        assert!(parse("{\"replicas\":[\"n1\"],\"leader\":\"n1\"}").unwrap_err().contains("unknown field"));
        assert!(parse("{}").unwrap_err().contains("missing field `replicas`"));
        let why = |text: &str| parse(text).unwrap().validate(&nodes()).unwrap_err();
        assert!(why("{\"replicas\":[]}").contains("empty"));
        assert!(why("{\"replicas\":[\"n1\",\"n9\"]}").contains("\"n9\" is not a node of this run"));
        assert!(why("{\"replicas\":[\"n1\",\"n1\"]}").contains("listed twice"));
        assert!(why("{\"replicas\":null}").contains("needs a \"reason\""));
        assert!(why("{\"replicas\":null,\"reason\":\" \"}").contains("empty"));
        assert!(why("{\"replicas\":[\"n1\"],\"reason\":\"x\"}").contains("only with"));
    }
}
