//! The fsync trigger: armed in the state dir, the tracer fires right after
//! the k-th successful data-file fsync returns and, when holding, keeps every
//! later sync from running until released. A power loss on the firing finds
//! the files exactly as the k-th fsync left them.

mod power_common;

use jetsam_faults::power::trigger::{self, FsyncTrigger};
use jetsam_faults::power::{self, DiscardModel};
use power_common::{Traced, WAIT, dirs};
use std::path::Path;
use std::time::{Duration, Instant};

/// `n` times: append 100 bytes of value i, then fsync.
fn appends_and_fsyncs(n: u8) -> Vec<String> {
    (1..=n).flat_map(|i| [format!("append:f:100:{i}"), "fsync:f".to_string()]).collect()
}

fn wait_fired(state: &Path) -> trigger::FsyncFired {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(f) = trigger::fsync_fired(state) {
            return f;
        }
        assert!(Instant::now() < deadline, "the fsync trigger did not fire within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn fsyncs_done(node: &Traced) -> usize {
    node.seen.iter().filter(|l| *l == "ok fsync:f").count()
}

#[test]
fn a_power_loss_on_the_40th_fsync_keeps_exactly_what_it_synced() {
    let (_tmp, data, state) = dirs();
    trigger::arm_fsync_trigger(&state, FsyncTrigger { count: 40, hold: true }).unwrap();
    let ops = appends_and_fsyncs(60);
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let mut node = Traced::probe(&data, &state, &ops);
    // The 41st append runs (writes are not held), its fsync is held.
    node.wait_line("ok append:f:100:41", WAIT);
    let fired = wait_fired(&state);
    assert_eq!((fired.count, fired.len, fired.file.as_str()), (40, 4000, "f"));
    std::thread::sleep(Duration::from_millis(100));
    node.wait_line("ok append:f:100:41", WAIT);
    assert_eq!(fsyncs_done(&node), 40, "the 41st fsync is held: {:?}", node.seen);
    node.kill();
    power::discard(&data, &state, &DiscardModel::All, 1).expect("discard");
    let want: Vec<u8> = (1..=40u8).flat_map(|i| [i; 100]).collect();
    let got = std::fs::read(data.join("f")).unwrap();
    assert_eq!(got.len(), 4000, "exactly 40 synced appends survive");
    assert_eq!(got, want);
}

#[test]
fn a_released_hold_lets_the_node_finish() {
    let (_tmp, data, state) = dirs();
    trigger::arm_fsync_trigger(&state, FsyncTrigger { count: 3, hold: true }).unwrap();
    let ops = appends_and_fsyncs(6);
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let mut node = Traced::probe(&data, &state, &ops);
    assert_eq!(wait_fired(&state).count, 3);
    node.wait_line("ok append:f:100:4", WAIT);
    std::thread::sleep(Duration::from_millis(100));
    node.wait_line("ok append:f:100:4", WAIT);
    assert_eq!(fsyncs_done(&node), 3, "held after the third: {:?}", node.seen);
    trigger::release_fsync_hold(&state).unwrap();
    node.wait_line("done", WAIT);
    assert_eq!(fsyncs_done(&node), 6);
    assert_eq!(node.child.wait().unwrap().code(), Some(0));
    assert!(!state.join(trigger::FSYNC_RELEASE_FILE).exists(), "the tracer took the release");
}

#[test]
fn without_a_hold_the_trigger_only_reports_and_counts_clean_fsyncs_too() {
    let (_tmp, data, state) = dirs();
    trigger::arm_fsync_trigger(&state, FsyncTrigger { count: 4, hold: false }).unwrap();
    // Two appends then three fsyncs with nothing new to sync: the 4th
    // data-file fsync is the third in a row.
    let ops = ["append:f:10:1", "fsync:f", "append:f:10:2", "fsync:f", "fsync:f", "fsync:f", "fsync:f"];
    let mut node = Traced::probe(&data, &state, &ops);
    node.wait_line("done", WAIT);
    assert_eq!(node.child.wait().unwrap().code(), Some(0));
    assert_eq!(fsyncs_done(&node), 5, "nothing held");
    let fired = trigger::fsync_fired(&state).expect("fired");
    assert_eq!((fired.count, fired.file.as_str()), (4, "f"));
}

#[test]
fn an_unarmed_tracer_fires_nothing() {
    let (_tmp, data, state) = dirs();
    let ops = appends_and_fsyncs(3);
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let mut node = Traced::probe(&data, &state, &ops);
    node.wait_line("done", WAIT);
    assert_eq!(node.child.wait().unwrap().code(), Some(0));
    assert_eq!(trigger::fsync_fired(&state), None);
}
