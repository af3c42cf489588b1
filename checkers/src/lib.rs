//! jetsam-checkers turns a run's history, fault events and recovered node
//! state into a report: which acknowledged writes were lost, which replicas
//! diverge, where the loss windows are, and the verdict per consistency mode.
//! Everything here is a pure function of its inputs: no process, socket or
//! clock, so `jetsam check RUN_DIR` can re-check any saved run offline.
