//! `history.jsonl`: one operation per line, written as the run goes
//! (docs/formats.md "history.jsonl"). An `invoke` is followed, some time
//! later, by exactly one completion of the same id from the same client:
//! `ok` (acknowledged, with the stream sequence and the answering node),
//! `fail` (definitely not written) or `info` (unknown, e.g. a timeout). A
//! client may have several publishes in flight (pipelining); an invoke with no
//! completion at the end of the file (the controller died) is indeterminate,
//! exactly like `info`.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::str::FromStr;

/// The kind of a history line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// Nanoseconds since the run started; never decreases down the file.
    pub t_ns: u64,
    pub client: u32,
    #[serde(rename = "type")]
    pub kind: OpType,
    /// `"<client>-<counter>"`, the counter strictly increasing per client.
    pub id: String,
    /// On `ok`: the stream sequence the system acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// On `ok`: the node that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// On `fail` and `info`: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    /// The borrowed form of this line, as a streaming reader parses it.
    pub fn borrowed(&self) -> OpRef<'_> {
        OpRef {
            t_ns: self.t_ns,
            client: self.client,
            kind: self.kind,
            id: Cow::Borrowed(&self.id),
            seq: self.seq,
            node: self.node.as_deref().map(Cow::Borrowed),
            error: self.error.as_deref().map(Cow::Borrowed),
        }
    }

    pub fn invoke(t_ns: u64, id: OpId) -> Self {
        Op { t_ns, client: id.client, kind: OpType::Invoke, id: id.to_string(), seq: None, node: None, error: None }
    }
    pub fn ok(t_ns: u64, id: OpId, seq: u64, node: impl Into<String>) -> Self {
        Op { seq: Some(seq), node: Some(node.into()), kind: OpType::Ok, ..Op::invoke(t_ns, id) }
    }
    pub fn fail(t_ns: u64, id: OpId, error: impl Into<String>) -> Self {
        Op { error: Some(error.into()), kind: OpType::Fail, ..Op::invoke(t_ns, id) }
    }
    pub fn info(t_ns: u64, id: OpId, error: impl Into<String>) -> Self {
        Op { error: Some(error.into()), kind: OpType::Info, ..Op::invoke(t_ns, id) }
    }
}

/// One line of `history.jsonl` parsed without copying its strings (they
/// borrow from the line unless they contain escapes). Same fields and rules
/// as [`Op`]; used by readers that stream millions of lines.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpRef<'a> {
    pub t_ns: u64,
    pub client: u32,
    #[serde(rename = "type")]
    pub kind: OpType,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default, borrow)]
    pub node: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub error: Option<Cow<'a, str>>,
}

/// A write's identity: the client that made it and that client's counter.
/// Ordered by client then counter, so per-writer classes (prefix, middle,
/// postfix) fall out of a sorted walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId {
    pub client: u32,
    pub counter: u64,
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.client, self.counter)
    }
}

impl FromStr for OpId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("id {s:?} is not \"<client>-<counter>\" (two unsigned integers)");
        let (c, n) = s.split_once('-').ok_or_else(bad)?;
        // Only the canonical spelling (as Display writes it) is an id: "0-01"
        // or "0-+1" stored by a system is a different string than the "0-1"
        // that was written, so it must not match it.
        let canonical = |part: &str| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && (part.len() == 1 || !part.starts_with('0'))
        };
        if !canonical(c) || !canonical(n) {
            return Err(bad());
        }
        let client = c.parse().map_err(|_| bad())?;
        let counter = n.parse().map_err(|_| bad())?;
        Ok(OpId { client, counter })
    }
}

/// The optional fields of a history line, as far as validation needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpFields {
    pub seq: Option<u64>,
    pub has_node: bool,
    pub has_error: bool,
}

/// Checks the rules of `history.jsonl` one line at a time, so a history of
/// millions of ops is validated while it streams. Feed every op in file order
/// to [`HistoryValidator::check`]; each `Err` is the "what is wrong" part of a
/// line error.
///
/// It runs once per line of histories of a hundred million lines, so its
/// two lookups are a table and a hash set rather than trees (which cost
/// ~100 ns a line, a third of the whole check).
#[derive(Debug, Default)]
pub struct HistoryValidator {
    last_t_ns: u64,
    /// Per client below [`DIRECT_CLIENTS`]: highest counter invoked so far.
    last_counter_direct: Vec<Option<u64>>,
    /// The same for the other clients.
    last_counter: BTreeMap<u32, u64>,
    /// Invoked and not yet completed (a few per client at a time).
    open: HashSet<OpId, BuildHasherDefault<IdHasher>>,
}

/// Client ids whose last counter is kept in a table.
const DIRECT_CLIENTS: u32 = 1 << 16;

/// A multiply-rotate hash (as rustc's FxHash) for [`OpId`]s: the set holds
/// ids the history itself wrote, so no flooding defence is needed, and
/// SipHash would cost more than the tree it replaces.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl HistoryValidator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates one op and returns its parsed id.
    pub fn check(&mut self, op: &Op) -> Result<OpId, String> {
        self.check_ref(&op.borrowed())
    }

    /// [`HistoryValidator::check`] for a borrowed line ([`OpRef`]), the form a
    /// streaming reader parses without allocating per line. Same rules.
    pub fn check_ref(&mut self, op: &OpRef<'_>) -> Result<OpId, String> {
        if op.t_ns < self.last_t_ns {
            return Err(format!("out of order: t_ns {} is before the previous line's {}", op.t_ns, self.last_t_ns));
        }
        let id: OpId = op.id.parse()?;
        let fields = OpFields { seq: op.seq, has_node: op.node.is_some(), has_error: op.error.is_some() };
        self.check_parts(op.t_ns, op.client, op.kind, id, fields)
    }

    /// [`HistoryValidator::check_ref`] for a record of a compact history
    /// (`history.bin`). Same rules and messages.
    pub fn check_compact(&mut self, op: &crate::compact::CompactOp) -> Result<OpId, String> {
        let fields = OpFields { seq: op.seq, has_node: op.has_node, has_error: op.has_error };
        self.check_parts(op.t_ns, op.id.client, op.kind, op.id, fields)
    }

    /// The rules shared by [`HistoryValidator::check_ref`] and
    /// [`HistoryValidator::check_compact`], for an op whose id is already
    /// parsed. Same messages.
    pub fn check_parts(
        &mut self,
        t_ns: u64,
        client: u32,
        kind: OpType,
        id: OpId,
        fields: OpFields,
    ) -> Result<OpId, String> {
        if t_ns < self.last_t_ns {
            return Err(format!("out of order: t_ns {} is before the previous line's {}", t_ns, self.last_t_ns));
        }
        self.last_t_ns = t_ns;
        if id.client != client {
            return Err(format!(
                "id {:?} belongs to client {} but the line says client {}",
                id.to_string(),
                id.client,
                client
            ));
        }
        match kind {
            OpType::Invoke => {
                if fields.seq.is_some() || fields.has_node || fields.has_error {
                    return Err("an invoke carries no seq, node or error".into());
                }
                let last = match self.last_counter_direct.get(client as usize) {
                    Some(last) => *last,
                    None if client < DIRECT_CLIENTS => None,
                    None => self.last_counter.get(&client).copied(),
                };
                if let Some(last) = last
                    && id.counter <= last
                {
                    return Err(format!(
                        "counter {} of client {} is not above its previous invoke's {} (counters strictly increase per client)",
                        id.counter, client, last
                    ));
                }
                if client < DIRECT_CLIENTS {
                    let c = client as usize;
                    if self.last_counter_direct.len() <= c {
                        self.last_counter_direct.resize(c + 1, None);
                    }
                    self.last_counter_direct[c] = Some(id.counter);
                } else {
                    self.last_counter.insert(client, id.counter);
                }
                self.open.insert(id);
            }
            OpType::Ok | OpType::Fail | OpType::Info => {
                if !self.open.remove(&id) {
                    return Err(format!("{:?} completes id {} which has no open invoke", kind, id));
                }
                match kind {
                    OpType::Ok => {
                        if fields.seq.is_none() || !fields.has_node {
                            return Err("an ok needs both seq and node".into());
                        }
                        if fields.has_error {
                            return Err("an ok carries no error".into());
                        }
                    }
                    _ => {
                        if !fields.has_error {
                            return Err(format!("a {:?} needs an error", kind).to_lowercase());
                        }
                        if fields.seq.is_some() {
                            return Err("only an ok carries a seq".into());
                        }
                    }
                }
            }
        }
        Ok(id)
    }

    /// Invokes that never completed (indeterminate), in id order.
    pub fn open(&self) -> impl Iterator<Item = &OpId> {
        let mut open: Vec<&OpId> = self.open.iter().collect();
        open.sort();
        open.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_pipelined_completions_and_rejects_bad_lines() {
        let mut v = HistoryValidator::new();
        let a = OpId { client: 0, counter: 0 };
        let b = OpId { client: 0, counter: 1 };
        v.check(&Op::invoke(1, a)).unwrap();
        v.check(&Op::invoke(2, b)).unwrap();
        v.check(&Op::ok(3, b, 1, "n1")).unwrap();
        v.check(&Op::info(4, a, "timeout")).unwrap();
        assert!(v.check(&Op::ok(5, a, 2, "n1")).unwrap_err().contains("no open invoke"));
        assert!(v.check(&Op::invoke(6, b)).unwrap_err().contains("strictly increase"));
        assert!(v.check(&Op::invoke(1, OpId { client: 1, counter: 0 })).unwrap_err().contains("out of order"));
        for odd in ["0-01", "0-+1", "00-1", "-1", "0-", "0-1-2", " 0-1"] {
            assert!(odd.parse::<OpId>().is_err(), "{odd} parsed");
        }
        assert_eq!("10-0".parse::<OpId>(), Ok(OpId { client: 10, counter: 0 }));
        let line = r#"{"t_ns":1,"client":0,"type":"invoke","id":"0-0"}"#;
        let op: Op = serde_json::from_str(line).unwrap();
        assert_eq!(op, Op::invoke(1, a));
        assert_eq!(serde_json::to_string(&op).unwrap(), line);
    }
}
