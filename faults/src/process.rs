//! Process faults: nodes as child process groups with explicit states (running, paused, stopped); kill/restart and pause/resume.
