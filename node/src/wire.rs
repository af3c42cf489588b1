//! The peer protocol between nodes: frames of a 4-byte big-endian length and
//! JSON (the same framing as the client protocol), carrying noraft's Raft
//! messages with the command data of every log entry they ship, plus a
//! hello and keep-alive pings. Conversion to and from noraft's types lives
//! here; sockets live in [`crate::net`].

use noraft::{ClusterConfig, LogEntries, LogEntry, LogIndex, LogPosition, Message, NodeId, Term};
use serde::{Deserialize, Serialize};

use crate::storage::Entry;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerFrame {
    /// First frame on a connection: who is dialing.
    Hello {
        from: String,
    },
    /// Keep-alive from the dialing side; answered with `Pong`.
    Ping,
    Pong,
    Raft(WireMessage),
}

/// A log position as (term, index).
pub type WirePos = (u64, u64);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireMessage {
    VoteCall { from: u64, term: u64, last: WirePos },
    VoteReply { from: u64, term: u64, granted: bool },
    AppendCall { from: u64, term: u64, commit: u64, prev: WirePos, entries: Vec<Entry> },
    AppendReply { from: u64, term: u64, last: WirePos },
}

pub fn pos_to_wire(p: LogPosition) -> WirePos {
    (p.term.get(), p.index.get())
}

pub fn pos_from_wire(p: WirePos) -> LogPosition {
    LogPosition { term: Term::new(p.0), index: LogIndex::new(p.1) }
}

pub fn config_to_entry(c: &ClusterConfig) -> Entry {
    let ids = |s: &std::collections::BTreeSet<NodeId>| s.iter().map(|n| n.get()).collect::<Vec<_>>();
    Entry::Config { voters: ids(&c.voters), new_voters: ids(&c.new_voters), non_voters: ids(&c.non_voters) }
}

/// noraft's view of a stored entry.
pub fn entry_to_raft(e: &Entry) -> LogEntry {
    match e {
        Entry::Term(t) => LogEntry::Term(Term::new(*t)),
        Entry::Config { voters, new_voters, non_voters } => {
            let mut c = ClusterConfig::new();
            c.voters.extend(voters.iter().map(|&n| NodeId::new(n)));
            c.new_voters.extend(new_voters.iter().map(|&n| NodeId::new(n)));
            c.non_voters.extend(non_voters.iter().map(|&n| NodeId::new(n)));
            LogEntry::ClusterConfig(c)
        }
        Entry::Cmd(_) => LogEntry::Command,
    }
}

/// Converts a noraft message; `command_at` supplies the stored entry of
/// every command index the message ships (the leader always has them).
pub fn to_wire(msg: &Message, mut entry_at: impl FnMut(LogPosition, &LogEntry) -> Entry) -> WireMessage {
    match msg {
        Message::RequestVoteCall { from, term, last_position } => {
            WireMessage::VoteCall { from: from.get(), term: term.get(), last: pos_to_wire(*last_position) }
        }
        Message::RequestVoteReply { from, term, vote_granted } => {
            WireMessage::VoteReply { from: from.get(), term: term.get(), granted: *vote_granted }
        }
        Message::AppendEntriesCall { from, term, commit_index, entries } => WireMessage::AppendCall {
            from: from.get(),
            term: term.get(),
            commit: commit_index.get(),
            prev: pos_to_wire(entries.prev_position()),
            entries: entries.iter_with_positions().map(|(p, e)| entry_at(p, &e)).collect(),
        },
        Message::AppendEntriesReply { from, term, last_position } => {
            WireMessage::AppendReply { from: from.get(), term: term.get(), last: pos_to_wire(*last_position) }
        }
    }
}

/// Converts back to noraft's message (entries lose their data: noraft only
/// sees `Command` markers; the caller keeps the data by position).
pub fn from_wire(msg: &WireMessage) -> Message {
    match msg {
        WireMessage::VoteCall { from, term, last } => Message::RequestVoteCall {
            from: NodeId::new(*from),
            term: Term::new(*term),
            last_position: pos_from_wire(*last),
        },
        WireMessage::VoteReply { from, term, granted } => {
            Message::RequestVoteReply { from: NodeId::new(*from), term: Term::new(*term), vote_granted: *granted }
        }
        WireMessage::AppendCall { from, term, commit, prev, entries } => Message::AppendEntriesCall {
            from: NodeId::new(*from),
            term: Term::new(*term),
            commit_index: LogIndex::new(*commit),
            entries: LogEntries::from_iter(pos_from_wire(*prev), entries.iter().map(entry_to_raft)),
        },
        WireMessage::AppendReply { from, term, last } => Message::AppendEntriesReply {
            from: NodeId::new(*from),
            term: Term::new(*term),
            last_position: pos_from_wire(*last),
        },
    }
}

/// The sender id claimed by a message.
pub fn sender(msg: &WireMessage) -> u64 {
    match msg {
        WireMessage::VoteCall { from, .. }
        | WireMessage::VoteReply { from, .. }
        | WireMessage::AppendCall { from, .. }
        | WireMessage::AppendReply { from, .. } => *from,
    }
}
