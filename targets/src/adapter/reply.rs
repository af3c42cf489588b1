//! Reading an adapter's reply lines (docs/adapter-protocol.md, "The adapter
//! protocol"): each line must be one JSON object with the `id` of a request,
//! and each op's reply must have its documented shape. Anything else is a
//! [`ProtocolError`] that names what was expected; the caller adds the
//! adapter, its role and the line number, stops the run (exit 4) and never
//! turns it into a verdict.

use crate::PublishOutcome;
use jetsam_core::recovered::RecoveredMsg;
use serde_json::{Map, Value};

/// Longest reply line an adapter may send (a `read` of a large stream is one line).
pub const REPLY_BYTES_MAX: usize = 256 << 20;
/// How much of a bad line an error quotes.
const QUOTE_CHARS_MAX: usize = 200;

/// What is wrong with one reply line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}; expected {expected}; got: {got}")]
pub struct ProtocolError {
    pub what: String,
    pub expected: String,
    /// The start of the line.
    pub got: String,
}

fn quote(line: &str) -> String {
    let mut q: String = line.chars().take(QUOTE_CHARS_MAX).collect();
    if q.len() < line.len() {
        q.push_str("...");
    }
    q
}

fn bad(what: impl Into<String>, expected: &str, line: &str) -> ProtocolError {
    ProtocolError { what: what.into(), expected: expected.into(), got: quote(line) }
}

/// Splits a reply line into its `id` and its fields.
pub fn parse_line(line: &str) -> Result<(u64, Map<String, Value>), ProtocolError> {
    const SHAPE: &str = "one JSON object per line with the integer \"id\" of a request";
    if line.len() > REPLY_BYTES_MAX {
        return Err(bad(format!("a reply line of {} bytes", line.len()), "at most 256 MiB per line", line));
    }
    let value: Value =
        serde_json::from_str(line).map_err(|e| bad(format!("the line is not JSON ({e})"), SHAPE, line))?;
    let Value::Object(mut fields) = value else { return Err(bad("the line is not a JSON object", SHAPE, line)) };
    let id = fields
        .remove("id")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| bad("the reply has no integer \"id\"", SHAPE, line))?;
    Ok((id, fields))
}

/// A publish reply: `ok` with a sequence >= 1 and a node of the cluster, or
/// `fail` / `info` with an error text.
pub fn publish(fields: &Map<String, Value>, nodes: &[String], line: &str) -> Result<PublishOutcome, ProtocolError> {
    const SHAPE: &str =
        r#"{"id":N,"outcome":"ok","seq":S,"node":"n1"} or {"id":N,"outcome":"fail"|"info","error":"..."}"#;
    let error = || fields.get("error").and_then(Value::as_str).map(str::to_string);
    match fields.get("outcome").and_then(Value::as_str) {
        Some("ok") => {
            let seq = fields
                .get("seq")
                .and_then(Value::as_u64)
                .filter(|s| *s >= 1)
                .ok_or_else(|| bad("a publish ok without an integer \"seq\" >= 1", SHAPE, line))?;
            let node = fields.get("node").and_then(Value::as_str).unwrap_or_default();
            if !nodes.iter().any(|n| n == node) {
                return Err(bad(
                    format!("a publish ok from node {node:?}, which is not in the cluster ({})", nodes.join(", ")),
                    SHAPE,
                    line,
                ));
            }
            Ok(PublishOutcome::Ok { seq, node: node.to_string() })
        }
        Some("fail") => Ok(PublishOutcome::Fail {
            error: error().ok_or_else(|| bad("a publish fail without an \"error\" text", SHAPE, line))?,
        }),
        Some("info") => Ok(PublishOutcome::Info {
            error: error().ok_or_else(|| bad("a publish info without an \"error\" text", SHAPE, line))?,
        }),
        _ => Err(bad("a publish reply without \"outcome\" ok, fail or info", SHAPE, line)),
    }
}

/// A `ready` or `converged` reply: `Ok(None)` when true, `Ok(Some(why))` when
/// not (an `error` reply counts as not, with its text).
pub fn flag(op: &str, fields: &Map<String, Value>, line: &str) -> Result<Option<String>, ProtocolError> {
    let expected = format!(r#"{{"id":N,"{op}":true}} or {{"id":N,"{op}":false,"why":"..."}}"#);
    if let Some(e) = fields.get("error").and_then(Value::as_str) {
        return Ok(Some(e.to_string()));
    }
    match fields.get(op).and_then(Value::as_bool) {
        Some(true) => Ok(None),
        Some(false) => Ok(Some(fields.get("why").and_then(Value::as_str).unwrap_or("(no why given)").to_string())),
        None => Err(bad(format!("a {op} reply without a boolean \"{op}\""), &expected, line)),
    }
}

/// A `read` or `read_cluster` reply: the messages in stream order, or the
/// adapter's reason the node cannot be read (`Ok(Err(why))`).
pub fn read(fields: &Map<String, Value>, line: &str) -> Result<Result<Vec<RecoveredMsg>, String>, ProtocolError> {
    const SHAPE: &str = r#"{"id":N,"msgs":[[seq,"msg"],...]} with increasing seqs, or {"id":N,"error":"..."}"#;
    if let Some(e) = fields.get("error").and_then(Value::as_str) {
        return Ok(Err(e.to_string()));
    }
    let items = fields
        .get("msgs")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("a read reply without \"msgs\"", SHAPE, line))?;
    let mut msgs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pair = item.as_array().filter(|a| a.len() == 2);
        let (Some(seq), Some(id)) = (pair.and_then(|a| a[0].as_u64()), pair.and_then(|a| a[1].as_str())) else {
            return Err(bad(format!("msgs[{i}] is not [seq, \"msg\"]"), SHAPE, line));
        };
        if let Some(last) = msgs.last().map(|m: &RecoveredMsg| m.seq)
            && seq <= last
        {
            return Err(bad(format!("msgs[{i}] has seq {seq} after seq {last}"), SHAPE, line));
        }
        msgs.push(RecoveredMsg { seq, id: id.to_string() });
    }
    Ok(Ok(msgs))
}

/// A `failover` reply: `Ok(Ok(..))` when it did it, `Ok(Err(why))` when it
/// says it could not, `Err` when the reply breaks the protocol (a `leader`
/// that is not a running node of the cluster, neither `ok` nor `error`).
pub fn failover(
    fields: &Map<String, Value>,
    nodes: &[String],
    down: &[String],
    line: &str,
) -> Result<Result<crate::Failover, String>, ProtocolError> {
    const SHAPE: &str = r#"{"id":N,"ok":true,"leader":"n2","note":"..."} or {"id":N,"error":"..."}"#;
    if let Some(e) = fields.get("error") {
        return match e.as_str() {
            Some(e) => Ok(Err(e.to_string())),
            None => Err(bad("a failover \"error\" that is not a string", SHAPE, line)),
        };
    }
    if fields.get("ok").and_then(Value::as_bool) != Some(true) {
        return Err(bad("a failover reply with neither \"ok\": true nor an \"error\"", SHAPE, line));
    }
    let leader = match fields.get("leader") {
        None | Some(Value::Null) => None,
        Some(Value::String(l)) if nodes.contains(l) && !down.contains(l) => Some(l.clone()),
        Some(other) => {
            return Err(bad(
                format!("a failover leader {other} that is not a running node of the cluster"),
                SHAPE,
                line,
            ));
        }
    };
    let note = fields.get("note").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Ok(crate::Failover { leader, note }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        vec!["n1".into(), "n2".into()]
    }

    fn publish_line(line: &str) -> Result<PublishOutcome, ProtocolError> {
        let (_, fields) = parse_line(line)?;
        publish(&fields, &nodes(), line)
    }

    #[test]
    fn good_replies_parse() {
        assert_eq!(parse_line(r#"{"id":7,"x":1}"#).unwrap().0, 7);
        assert_eq!(
            publish_line(r#"{"id":1,"outcome":"ok","seq":17,"node":"n2","extra":true}"#).unwrap(),
            PublishOutcome::Ok { seq: 17, node: "n2".into() }
        );
        assert_eq!(
            publish_line(r#"{"id":1,"outcome":"info","error":"timeout"}"#).unwrap(),
            PublishOutcome::Info { error: "timeout".into() }
        );
        assert_eq!(
            publish_line(r#"{"id":1,"outcome":"fail","error":"refused"}"#).unwrap(),
            PublishOutcome::Fail { error: "refused".into() }
        );
        let (_, f) = parse_line(r#"{"id":2,"ready":false,"why":"n2 down"}"#).unwrap();
        assert_eq!(flag("ready", &f, "").unwrap(), Some("n2 down".into()));
        let (_, f) = parse_line(r#"{"id":2,"converged":true}"#).unwrap();
        assert_eq!(flag("converged", &f, "").unwrap(), None);
        let (_, f) = parse_line(r#"{"id":3,"msgs":[[1,"0-0"],[5,"1-0"]]}"#).unwrap();
        let msgs = read(&f, "").unwrap().unwrap();
        assert_eq!(msgs, vec![RecoveredMsg { seq: 1, id: "0-0".into() }, RecoveredMsg { seq: 5, id: "1-0".into() }]);
        let (_, f) = parse_line(r#"{"id":3,"error":"no such table"}"#).unwrap();
        assert_eq!(read(&f, "").unwrap(), Err("no such table".into()));
    }

    #[test]
    fn failover_replies_parse_and_a_leader_that_is_down_or_unknown_is_refused() {
        let down = vec!["n1".to_string()];
        let parse = |line: &str| {
            let (_, f) = parse_line(line).unwrap();
            failover(&f, &nodes(), &down, line)
        };
        assert_eq!(
            parse(r#"{"id":4,"ok":true,"leader":"n2","note":"promoted n2"}"#).unwrap(),
            Ok(crate::Failover { leader: Some("n2".into()), note: "promoted n2".into() })
        );
        assert_eq!(parse(r#"{"id":4,"ok":true}"#).unwrap(), Ok(crate::Failover { leader: None, note: String::new() }));
        assert_eq!(parse(r#"{"id":4,"error":"no standby"}"#).unwrap(), Err("no standby".into()));
        for (line, what) in [
            (r#"{"id":4,"ok":true,"leader":"n1"}"#, "leader \"n1\" that is not a running node"),
            (r#"{"id":4,"ok":true,"leader":"n7"}"#, "leader \"n7\" that is not a running node"),
            (r#"{"id":4,"ok":false}"#, "neither \"ok\": true nor an \"error\""),
            (r#"{"id":4,"error":3}"#, "\"error\" that is not a string"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.what.contains(what), "{line}: {e}");
            assert!(e.expected.contains("\"leader\":\"n2\""), "{e}");
        }
    }

    #[test]
    fn bad_replies_name_what_is_wrong_and_what_was_expected() {
        let cases = [
            ("not json", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"outcome":"ok"}"#, "no integer \"id\""),
            (r#"{"id":-1}"#, "no integer \"id\""),
            (r#"{"id":1,"outcome":"maybe"}"#, "without \"outcome\""),
            (r#"{"id":1,"outcome":"ok","node":"n1"}"#, "integer \"seq\" >= 1"),
            (r#"{"id":1,"outcome":"ok","seq":0,"node":"n1"}"#, "integer \"seq\" >= 1"),
            (r#"{"id":1,"outcome":"ok","seq":"3","node":"n1"}"#, "integer \"seq\" >= 1"),
            (r#"{"id":1,"outcome":"ok","seq":3,"node":"n9"}"#, "node \"n9\", which is not in the cluster (n1, n2)"),
            (r#"{"id":1,"outcome":"fail"}"#, "without an \"error\""),
        ];
        for (line, expected) in cases {
            let e = publish_line(line).unwrap_err();
            assert!(e.to_string().contains(expected), "{line}: expected {expected:?} in {e}");
            assert!(e.to_string().contains("expected "), "{e}");
            assert!(e.got.starts_with(&line[..line.len().min(5)]), "the error quotes the line: {e}");
        }
        let reads = [
            (r#"{"id":3}"#, "without \"msgs\""),
            (r#"{"id":3,"msgs":[[1]]}"#, "msgs[0] is not [seq, \"msg\"]"),
            (r#"{"id":3,"msgs":[["1","a"]]}"#, "msgs[0] is not"),
            (r#"{"id":3,"msgs":[[2,"a"],[2,"b"]]}"#, "msgs[1] has seq 2 after seq 2"),
        ];
        for (line, expected) in reads {
            let (_, f) = parse_line(line).unwrap();
            let e = read(&f, line).unwrap_err();
            assert!(e.to_string().contains(expected), "{line}: expected {expected:?} in {e}");
        }
        let (_, f) = parse_line(r#"{"id":2,"ready":"yes"}"#).unwrap();
        assert!(flag("ready", &f, "").unwrap_err().to_string().contains("boolean \"ready\""));
        let long = format!(r#"{{"id":1,"pad":"{}"}}"#, "x".repeat(1000));
        let e = publish_line(&long).unwrap_err();
        assert!(e.got.ends_with("...") && e.got.len() < 300, "a long line is quoted short");
    }
}
