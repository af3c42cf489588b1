//! Children the targets spawn (adapter processes, the offline reader) die
//! with the controller: one place for the parent-death signal.

use std::os::unix::process::CommandExt;

/// Makes the child get SIGKILL when the process that spawned it dies
/// (`PR_SET_PDEATHSIG`), and kill itself at once if that parent is already
/// gone by the time the signal is armed, so nothing outlives jetsam even if
/// it is SIGKILLed.
pub(crate) fn die_with_parent(command: &mut std::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid, raise).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}
