//! Client commands carried in Raft log entries, and [`LogState`]: the
//! in-memory view of the local log (every entry with its command data, the
//! stream sequence each publish got, the stream config over time).
//!
//! Stream sequences are a pure function of the log prefix (each publish in
//! index order takes the next sequence; a publish before any create is a
//! no-op), so every replica holding the same prefix assigns the same
//! sequences without any extra coordination. This module does no I/O.

use jetsam_core::proto::{BatchMessage, StoredMessage, StreamConfig};
use serde::{Deserialize, Serialize};

use crate::storage::{Entry, Record};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    CreateStream {
        config: StreamConfig,
    },
    UpdateStream {
        config: StreamConfig,
    },
    Publish {
        id: String,
        #[serde(with = "jetsam_core::proto::hex_bytes")]
        payload: Vec<u8>,
    },
    Batch {
        messages: Vec<BatchMessage>,
    },
}

#[derive(Debug, Clone)]
struct Slot {
    term: u64,
    entry: Entry,
    /// First stream sequence this entry holds (meaningful when `count > 0`).
    first_seq: u64,
    count: u64,
}

/// The local log in memory (index `i` at `slots[i - 1]`).
#[derive(Debug, Default)]
pub struct LogState {
    slots: Vec<Slot>,
    /// `msg_index[s - 1]` = log index holding stream sequence `s`.
    msg_index: Vec<u64>,
    /// (log index, config) for every entry that set the stream config.
    configs: Vec<(u64, StreamConfig)>,
}

impl LogState {
    pub fn last_index(&self) -> u64 {
        self.slots.len() as u64
    }

    pub fn last_seq(&self) -> u64 {
        self.msg_index.len() as u64
    }

    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.slots.get(index as usize - 1).map(|s| s.term)
    }

    pub fn entry(&self, index: u64) -> Option<(u64, &Entry)> {
        index.checked_sub(1).and_then(|i| self.slots.get(i as usize)).map(|s| (s.term, &s.entry))
    }

    /// (first_seq, count) of the entry at `index`.
    pub fn seqs_at(&self, index: u64) -> (u64, u64) {
        let slot = &self.slots[index as usize - 1];
        (slot.first_seq, slot.count)
    }

    /// The stream config in force after the last entry.
    pub fn config(&self) -> Option<&StreamConfig> {
        self.configs.last().map(|(_, c)| c)
    }

    /// The stream config in force after entry `index`.
    pub fn config_at(&self, index: u64) -> Option<&StreamConfig> {
        let n = self.configs.partition_point(|(i, _)| *i <= index);
        n.checked_sub(1).map(|k| &self.configs[k].1)
    }

    /// The last stream sequence held by entries up to `index`.
    pub fn last_seq_at(&self, index: u64) -> u64 {
        self.msg_index.partition_point(|&i| i <= index) as u64
    }

    pub fn push(&mut self, record: &Record) {
        assert_eq!(record.index, self.last_index() + 1, "log entries are pushed in index order");
        let index = record.index;
        let first_seq = self.last_seq() + 1;
        let mut count = 0;
        if let Entry::Cmd(cmd) = &record.entry {
            match cmd {
                Command::CreateStream { config } => {
                    if self.config().is_none() {
                        self.configs.push((index, config.clone()));
                    }
                }
                Command::UpdateStream { config } => {
                    if self.config().is_some_and(|c| c.name == config.name) {
                        self.configs.push((index, config.clone()));
                    }
                }
                Command::Publish { .. } => count = u64::from(self.config().is_some()),
                Command::Batch { messages } => {
                    if self.config().is_some() {
                        count = messages.len() as u64;
                    }
                }
            }
        }
        for _ in 0..count {
            self.msg_index.push(index);
        }
        self.slots.push(Slot { term: record.term, entry: record.entry.clone(), first_seq, count });
    }

    /// Drops every entry after `index`.
    pub fn truncate_after(&mut self, index: u64) {
        if index >= self.last_index() {
            return;
        }
        self.slots.truncate(index as usize);
        let keep = self.msg_index.partition_point(|&i| i <= index);
        self.msg_index.truncate(keep);
        let keep = self.configs.partition_point(|(i, _)| *i <= index);
        self.configs.truncate(keep);
    }

    /// Messages from `from_seq` through `last_seq` (inclusive), at most
    /// `max`; with `ids_only` their payloads are left empty.
    pub fn messages(&self, from_seq: u64, last_seq: u64, max: usize, ids_only: bool) -> Vec<StoredMessage> {
        let payload_of = |p: &Vec<u8>| if ids_only { Vec::new() } else { p.clone() };
        let mut out = Vec::new();
        let mut seq = from_seq.max(1);
        while seq <= last_seq && out.len() < max {
            let index = self.msg_index[seq as usize - 1];
            let slot = &self.slots[index as usize - 1];
            let Entry::Cmd(cmd) = &slot.entry else { unreachable!("sequences map to command entries") };
            let sub = (seq - slot.first_seq) as usize;
            match cmd {
                Command::Publish { id, payload } => {
                    out.push(StoredMessage { seq, id: id.clone(), payload: payload_of(payload) })
                }
                Command::Batch { messages } => {
                    let m = &messages[sub];
                    out.push(StoredMessage { seq, id: m.id.clone(), payload: payload_of(&m.payload) })
                }
                _ => unreachable!("only publishes hold sequences"),
            }
            seq += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StreamConfig {
        StreamConfig { name: "s".into(), replicas: 3, consistency: None }
    }

    fn rec(index: u64, cmd: Command) -> Record {
        Record { index, term: 1, entry: Entry::Cmd(cmd) }
    }

    fn publish(id: &str) -> Command {
        Command::Publish { id: id.into(), payload: vec![1] }
    }

    #[test]
    fn sequences_follow_the_log_and_truncation() {
        let mut log = LogState::default();
        log.push(&Record { index: 1, term: 0, entry: Entry::Term(0) });
        log.push(&rec(2, publish("early")));
        log.push(&rec(3, Command::CreateStream { config: cfg() }));
        log.push(&rec(4, publish("a")));
        log.push(&rec(
            5,
            Command::Batch {
                messages: vec![
                    BatchMessage { id: "b".into(), payload: vec![] },
                    BatchMessage { id: "c".into(), payload: vec![] },
                ],
            },
        ));
        log.push(&rec(6, publish("d")));
        assert_eq!(log.seqs_at(2), (1, 0), "a publish before the stream exists is a no-op");
        assert_eq!(log.last_seq(), 4);
        assert_eq!(log.seqs_at(5), (2, 2));
        let ids: Vec<_> = log.messages(1, 4, 10, false).into_iter().map(|m| (m.seq, m.id)).collect();
        assert_eq!(ids, vec![(1, "a".into()), (2, "b".into()), (3, "c".into()), (4, "d".into())]);
        assert_eq!(log.last_seq_at(4), 1);
        assert_eq!(log.messages(2, 4, 1, false).len(), 1);
        assert!(log.messages(1, 4, 10, true).iter().all(|m| m.payload.is_empty()));
        log.truncate_after(4);
        assert_eq!(log.last_seq(), 1);
        log.truncate_after(2);
        assert!(log.config().is_none());
        assert_eq!(log.last_seq(), 0);
    }
}
