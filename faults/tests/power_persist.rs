//! The undo log lives in the state dir: a plain SIGKILL keeps it (and the
//! page cache keeps the unsynced data), a tracer started again on the same
//! state dir continues it, and a later power loss still loses what was never
//! synced. Two tracers cannot share a state dir, and discard refuses while
//! one runs.

mod power_common;

use jetsam_faults::power::{self, DiscardModel, PowerError};
use power_common::{Traced, WAIT, dirs};

#[test]
fn undo_log_survives_a_plain_kill_and_a_tracer_restart() {
    let (_tmp, data, state) = dirs();
    let mut node = Traced::probe(&data, &state, &["pwrite:a:0:8192:1", "fsync:a", "pwrite:a:0:4096:2", "hang"]);
    node.wait_line("done", WAIT);
    node.kill();
    let after_kill = std::fs::read(data.join("a")).unwrap();
    assert_eq!(&after_kill[..4096], &[2u8; 4096][..], "a plain kill keeps unsynced data (page cache)");
    let logs = std::fs::read_dir(state.join("undo")).unwrap().count();
    assert_eq!(logs, 1, "the undo log of a survives the kill");

    // A second life of the node writes more, again without syncing.
    let mut node = Traced::probe(&data, &state, &["pwrite:a:4096:4096:3", "append:a:100:4", "hang"]);
    node.wait_line("done", WAIT);
    node.kill();
    let report = power::discard(&data, &state, &DiscardModel::All, 0).expect("discard");
    assert_eq!(std::fs::read(data.join("a")).unwrap(), vec![1u8; 8192], "both lives' unsynced writes are lost");
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].pages_discarded, 3, "{report:?}");
}

#[test]
fn a_sync_in_a_later_life_makes_earlier_writes_durable() {
    let (_tmp, data, state) = dirs();
    let mut node = Traced::probe(&data, &state, &["pwrite:a:0:8192:1", "fsync:a", "pwrite:a:0:4096:2", "hang"]);
    node.wait_line("done", WAIT);
    node.kill();
    let mut node = Traced::probe(&data, &state, &["fsync:a", "pwrite:a:4096:10:3", "hang"]);
    node.wait_line("done", WAIT);
    node.kill();
    power::discard(&data, &state, &DiscardModel::All, 0).expect("discard");
    let got = std::fs::read(data.join("a")).unwrap();
    assert_eq!(&got[..4096], &[2u8; 4096][..], "synced in the second life");
    assert_eq!(&got[4096..], &[1u8; 4096][..], "the second life's unsynced write is lost");
}

#[test]
fn one_tracer_per_state_dir_and_no_discard_while_it_runs() {
    let (_tmp, data, state) = dirs();
    let mut node = Traced::probe(&data, &state, &["pwrite:a:0:10:1", "hang"]);
    node.wait_line("done", WAIT);
    let mut second = Traced::probe(&data, &state, &["hang"]);
    let status = second.child.wait().expect("wait for the second tracer");
    assert_eq!(status.code(), Some(jetsam_core::exit::ENVIRONMENT), "a second tracer on the same state dir");
    match power::discard(&data, &state, &DiscardModel::All, 0) {
        Err(PowerError::Busy { .. }) => {}
        other => panic!("discard while the tracer runs must refuse, got {other:?}"),
    }
    assert_eq!(std::fs::read(data.join("a")).unwrap(), vec![1u8; 10], "nothing discarded while running");
    node.kill();
    power::discard(&data, &state, &DiscardModel::All, 0).expect("discard after the kill");
    assert_eq!(std::fs::read(data.join("a")).unwrap(), Vec::<u8>::new());
}
