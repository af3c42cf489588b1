//! jetsam-faults injects and heals faults, each as a verb pair: process faults
//! (kill/restart, pause/resume), power loss (tracking unsynced writes under
//! ptrace and discarding them), network faults (per-link TCP proxies that
//! partition and heal) and disk faults (bit flips and truncation of data
//! files).

pub mod disk;
pub mod net;
pub mod power;
pub mod process;
