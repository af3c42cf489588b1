//! The fsync trigger: the controller arms it in a node's state dir
//! ([`arm_fsync_trigger`]); the tracer counts the node's successful
//! fsync/fdatasync calls on regular files under the data dir while it is
//! armed, and right after the k-th one returns it writes `S/fsync-fired`
//! ([`fsync_fired`]) and, when asked to hold, holds every later sync of the
//! node (fsync, fdatasync, syncfs, sync, O_SYNC/O_DSYNC writes) at its entry
//! until the controller writes `S/fsync-release` ([`release_fsync_hold`]) or
//! [`HOLD_MAX`] passes. With the hold, a power loss injected on the firing
//! finds the node's files exactly as the k-th fsync left them durable (a
//! sync of another thread already running when the k-th returned may still
//! complete: the kernel cannot take it back).
//!
//! Files are written whole and renamed into place, so neither side reads
//! half a line. The count restarts with each tracer (each start of the node).

use super::{PowerError, remove_if_there, write_whole};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// `S/fsync-trigger`: `<count> <hold 0|1>`; present while armed.
pub const FSYNC_TRIGGER_FILE: &str = "fsync-trigger";
/// `S/fsync-fired`: `<count> <t_ns> <len> <file>`, written once when the trigger fires.
pub const FSYNC_FIRED_FILE: &str = "fsync-fired";
/// `S/fsync-release`: present when the controller lets held syncs go.
pub const FSYNC_RELEASE_FILE: &str = "fsync-release";
/// The longest a tracer holds syncs on its own: a controller that never
/// releases (it died, or the fault went elsewhere) must not wedge the node.
pub const HOLD_MAX: Duration = Duration::from_secs(10);

/// An armed fsync trigger as the tracer reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsyncTrigger {
    /// Fire right after this many successful data-file fsyncs (1-based).
    pub count: u64,
    /// Hold later syncs until released.
    pub hold: bool,
}

/// What the tracer wrote when the trigger fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsyncFired {
    pub count: u64,
    /// The tracer's clock (CLOCK_REALTIME ns) when the k-th fsync returned.
    pub t_ns: u64,
    /// The synced file's length when the k-th fsync started: what it made durable.
    pub len: u64,
    /// The file the k-th fsync synced, relative to the data dir.
    pub file: String,
}

/// Arms the trigger (clearing any earlier firing and release).
pub fn arm_fsync_trigger(state_dir: &Path, trigger: FsyncTrigger) -> Result<(), PowerError> {
    assert!(trigger.count >= 1, "fsync trigger counts from 1");
    remove_if_there(&state_dir.join(FSYNC_FIRED_FILE))?;
    remove_if_there(&state_dir.join(FSYNC_RELEASE_FILE))?;
    write_whole(state_dir, FSYNC_TRIGGER_FILE, &format!("{} {}\n", trigger.count, u8::from(trigger.hold)))
}

/// Disarms the trigger (after it fired, or at the end of the load).
pub fn disarm_fsync_trigger(state_dir: &Path) -> Result<(), PowerError> {
    remove_if_there(&state_dir.join(FSYNC_TRIGGER_FILE))
}

/// The armed trigger, if any (read by the tracer at each data-file fsync).
pub fn read_fsync_trigger(state_dir: &Path) -> Option<FsyncTrigger> {
    let text = fs::read_to_string(state_dir.join(FSYNC_TRIGGER_FILE)).ok()?;
    let mut parts = text.split_whitespace();
    let count: u64 = parts.next()?.parse().ok()?;
    let hold = parts.next()? == "1";
    (count >= 1).then_some(FsyncTrigger { count, hold })
}

/// Written by the tracer when the trigger fires.
pub fn write_fsync_fired(state_dir: &Path, fired: &FsyncFired) -> Result<(), PowerError> {
    // The file name goes last: it may hold spaces.
    write_whole(state_dir, FSYNC_FIRED_FILE, &format!("{} {} {} {}\n", fired.count, fired.t_ns, fired.len, fired.file))
}

/// The firing, once the tracer wrote it.
pub fn fsync_fired(state_dir: &Path) -> Option<FsyncFired> {
    let text = fs::read_to_string(state_dir.join(FSYNC_FIRED_FILE)).ok()?;
    let line = text.strip_suffix('\n')?;
    let mut parts = line.splitn(4, ' ');
    let count = parts.next()?.parse().ok()?;
    let t_ns = parts.next()?.parse().ok()?;
    let len = parts.next()?.parse().ok()?;
    let file = parts.next()?.to_string();
    Some(FsyncFired { count, t_ns, len, file })
}

/// Lets the tracer's held syncs go (harmless when nothing is held).
pub fn release_fsync_hold(state_dir: &Path) -> Result<(), PowerError> {
    write_whole(state_dir, FSYNC_RELEASE_FILE, "\n")
}

/// Whether the controller released the hold; the tracer removes the file.
pub fn take_fsync_release(state_dir: &Path) -> bool {
    fs::remove_file(state_dir.join(FSYNC_RELEASE_FILE)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_fire_release_round_trip() {
        let dir = std::env::temp_dir().join(format!("jetsam-trigger-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(read_fsync_trigger(&dir), None);
        arm_fsync_trigger(&dir, FsyncTrigger { count: 40, hold: true }).unwrap();
        assert_eq!(read_fsync_trigger(&dir), Some(FsyncTrigger { count: 40, hold: true }));
        assert_eq!(fsync_fired(&dir), None);
        let fired = FsyncFired { count: 40, t_ns: 123, len: 4096, file: "log/00 01.seg".into() };
        write_fsync_fired(&dir, &fired).unwrap();
        assert_eq!(fsync_fired(&dir), Some(fired));
        assert!(!take_fsync_release(&dir));
        release_fsync_hold(&dir).unwrap();
        assert!(take_fsync_release(&dir));
        assert!(!take_fsync_release(&dir), "taken once");
        // Re-arming clears the earlier firing.
        arm_fsync_trigger(&dir, FsyncTrigger { count: 1, hold: false }).unwrap();
        assert_eq!(fsync_fired(&dir), None);
        disarm_fsync_trigger(&dir).unwrap();
        assert_eq!(read_fsync_trigger(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
