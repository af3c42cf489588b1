//! jetsam-harness is the controller and the `jetsam` CLI: it loads and
//! validates scenarios, runs a cluster through its phases (start, load and
//! faults, heal, read back, check), writes the run folder, and runs suites.
//! The `jetsam` binary is a thin `main` over this library.

pub mod adapter_check;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod compact;
pub mod compact_file;
pub mod events;
pub mod explore;
pub mod index;
pub mod junit;
pub mod matrix;
pub mod merge;
pub mod nemesis;
pub mod phases;
pub mod ports;
pub mod progress;
pub mod readback;
pub mod report_page;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod shard;
pub mod shrink;
pub mod suite;
pub mod suite_index;
pub mod triggers;
