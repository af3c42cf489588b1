//! Exit codes of `jetsam run`, `jetsam check` and `jetsam suite`, in one place
//! (DESIGN.md "Exit codes"). Every binary maps its outcome through these.

/// The checker decided: the system kept every acknowledged write (or the
/// suite matched every scenario's `expect`).
pub const PASS: i32 = 0;
/// The checker decided: the system lost or diverged (or a suite scenario's
/// verdict differs from its `expect`).
pub const FAIL: i32 = 1;
/// Bad input: usage, scenario, malformed run-folder files. Same as clap's own
/// usage error code.
pub const BAD_INPUT: i32 = 2;
/// The checker could not decide (e.g. fewer than a majority of nodes readable).
pub const UNKNOWN: i32 = 3;
/// Environment or harness error: missing binary, no free port, permission,
/// a bounded wait that gave up.
pub const ENVIRONMENT: i32 = 4;
