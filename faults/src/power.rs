//! Power loss: a ptrace+seccomp tracer keeps an undo log of unsynced writes under a data dir and discards them on a crash.
