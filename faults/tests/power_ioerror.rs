//! The io-error fault: while set, fsync/fdatasync of data files fail with EIO
//! and writes with ENOSPC, without running; cleared, they work again. Files
//! outside the data dir are not affected.

mod power_common;

use jetsam_faults::power::{self, DiscardModel, IoErrorMode};
use power_common::{Traced, WAIT, dirs};

#[test]
fn io_error_fails_syncs_and_writes_until_cleared() {
    let (tmp, data, state) = dirs();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let out_file = "../outside/o";
    let ops = [
        "pwrite:a:0:100:1".to_string(),
        "wait".to_string(),
        "fsync:a".to_string(),
        "pwrite:a:0:10:2".to_string(),
        "fdatasync:a".to_string(),
        format!("pwrite:{out_file}:0:10:3"),
        format!("fsync:{out_file}"),
        "wait".to_string(),
        "pwrite:b:0:10:4".to_string(),
        "wait".to_string(),
        "fsync:a".to_string(),
        "pwrite:a:50:10:5".to_string(),
        "hang".to_string(),
    ];
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let mut node = Traced::probe(&data, &state, &ops);
    node.wait_line("waiting", WAIT);
    power::set_io_error(&state, Some(IoErrorMode::Both)).unwrap();
    node.send_line();
    node.wait_line(&format!("ok fsync:{out_file}"), WAIT);
    let seen = node.seen.clone();
    assert!(seen.contains(&format!("err {} fsync:a", libc::EIO)), "{seen:?}");
    assert!(seen.contains(&format!("err {} pwrite:a:0:10:2", libc::ENOSPC)), "{seen:?}");
    assert!(seen.contains(&format!("err {} fdatasync:a", libc::EIO)), "{seen:?}");
    assert!(seen.contains(&format!("ok pwrite:{out_file}:0:10:3")), "outside the data dir: {seen:?}");
    assert_eq!(std::fs::read(data.join("a")).unwrap(), vec![1u8; 100], "the failed write did not run");

    // EIO only: writes work, syncs fail.
    power::set_io_error(&state, Some(IoErrorMode::Eio)).unwrap();
    node.send_line();
    node.wait_line("ok pwrite:b:0:10:4", WAIT);
    power::set_io_error(&state, None).unwrap();
    node.send_line();
    node.wait_line("done", WAIT);
    assert!(node.seen.contains(&"ok fsync:a".to_string()), "{:?}", node.seen);
    node.kill();
    power::discard(&data, &state, &DiscardModel::All, 0).unwrap();
    assert_eq!(std::fs::read(data.join("a")).unwrap(), vec![1u8; 100], "synced once the fault cleared");
    assert_eq!(std::fs::read(data.join("b")).unwrap(), Vec::<u8>::new(), "never synced");
}

#[test]
fn enospc_only_leaves_syncs_working() {
    let (_tmp, data, state) = dirs();
    power::set_io_error(&state, Some(IoErrorMode::Enospc)).unwrap();
    let mut node = Traced::probe(&data, &state, &["create:a", "pwrite:a:0:10:1", "fsync:a", "hang"]);
    node.wait_line("done", WAIT);
    assert!(node.seen.contains(&format!("err {} pwrite:a:0:10:1", libc::ENOSPC)), "{:?}", node.seen);
    assert!(node.seen.contains(&"ok fsync:a".to_string()), "{:?}", node.seen);
}
