//! jetsam-core is the shared vocabulary of jetsam: the types of every
//! run-folder contract (history ops, fault events, recovered messages, the
//! report), the scenario schema, durations, the reference node's client
//! protocol messages, format versions and the documented exit codes. It does
//! no I/O beyond parsing text handed to it and has no async code, so every
//! other crate can depend on it and `jetsam check` can re-read any saved run.

pub mod audit_log;
pub mod compact;
pub mod duration;
pub mod event;
pub mod exit;
pub mod fastline;
pub mod history;
pub mod jsonl;
pub mod proto;
pub mod recovered;
pub mod report;
pub mod scenario;
pub mod trigger;

/// Version of the run-folder formats described in `docs/formats.md`.
/// Bump it (and the docs) whenever a field changes meaning or is removed.
pub const FORMAT_VERSION: u32 = 1;
