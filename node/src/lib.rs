//! jetsam-node is the reference replicated stream node: a Raft-replicated
//! (noraft) append-only stream with CRC-checked segment storage, the NATS
//! ADR's strong/async write consistency, a NATS-like sync policy, and
//! deliberate bugs behind `--bug` so jetsam can prove it catches them.
