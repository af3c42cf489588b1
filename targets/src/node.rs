//! The reference node (`jetsam-node`) as a target: its client protocol over
//! TCP (docs/node-protocol.md) and the [`crate::Target`] implementation.
