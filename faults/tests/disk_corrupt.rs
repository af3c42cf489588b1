//! Bit flips and truncation on real files: exact byte changes recorded and
//! applied, same seed same result, truncation lengths, glob semantics, errors.

use jetsam_core::event::EventKind;
use jetsam_faults::disk::{Corruption, DiskError, bitflip, pick_fixed_minority, truncate, zipf_tail_len};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn globs(g: &[&str]) -> Vec<String> {
    g.iter().map(|s| s.to_string()).collect()
}

/// A small data dir: nested message blocks, an index, an empty file, a log.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("streams/s1/msgs")).unwrap();
    fs::create_dir_all(root.join("streams/s2/msgs")).unwrap();
    for (rel, len) in [("streams/s1/msgs/1.blk", 4096), ("streams/s1/msgs/2.blk", 1000), ("streams/s2/msgs/1.blk", 10)]
    {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        fs::write(root.join(rel), bytes).unwrap();
    }
    fs::write(root.join("streams/s1/index.db"), b"index").unwrap();
    fs::write(root.join("streams/s1/empty.blk"), b"").unwrap();
    fs::write(root.join("top.blk"), b"top-level block").unwrap();
    dir
}

/// Every file's bytes, by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn bitflip_changes_exactly_the_recorded_bits() {
    let dir = data_dir();
    let before = snapshot(dir.path());
    let flips = bitflip(dir.path(), &globs(&["*.blk"]), 3, &mut rng(11)).unwrap();
    assert_eq!(flips.len(), 3);
    let after = snapshot(dir.path());
    let file = flips[0].file().to_string();
    assert!(file.ends_with(".blk") && file != "streams/s1/empty.blk", "{file}");
    // Only the chosen file changed, and only at the recorded offsets.
    for (rel, bytes) in &before {
        if *rel != file {
            assert_eq!(&after[rel], bytes, "{rel} changed but was not chosen");
        }
    }
    let mut expect = before[&file].clone();
    let mut last = None;
    for f in &flips {
        let Corruption::Bitflip { file: f_file, offset, bit, before: b, after: a } = f.clone() else {
            panic!("expected a bit flip, got {f:?}");
        };
        assert_eq!(f_file, file);
        assert!(bit < 8);
        assert!(last < Some((offset, bit)), "flips not sorted or not distinct");
        last = Some((offset, bit));
        assert_eq!(expect[offset as usize], b, "recorded before-byte is wrong at {offset}");
        assert_eq!(a, b ^ (1 << bit));
        expect[offset as usize] = a;
    }
    assert_eq!(after[&file], expect);
    let changed_bits: u32 = before[&file].iter().zip(&after[&file]).map(|(x, y)| (x ^ y).count_ones()).sum();
    assert_eq!(changed_bits, 3);
}

#[test]
fn same_seed_same_corruption() {
    let (one, two) = (data_dir(), data_dir());
    let g = globs(&["*.blk", "index.db"]);
    let a = bitflip(one.path(), &g, 2, &mut rng(5)).unwrap();
    let b = bitflip(two.path(), &g, 2, &mut rng(5)).unwrap();
    assert_eq!(a, b);
    assert_eq!(snapshot(one.path()), snapshot(two.path()));
    let a = truncate(one.path(), &g, &mut rng(6)).unwrap();
    let b = truncate(two.path(), &g, &mut rng(6)).unwrap();
    assert_eq!(a, b);
    assert_eq!(snapshot(one.path()), snapshot(two.path()));
    // The seed matters: over several seeds more than one file gets picked.
    let picked: std::collections::BTreeSet<String> = (0..16)
        .map(|s| {
            let d = data_dir();
            bitflip(d.path(), &g, 1, &mut rng(s)).unwrap()[0].file().to_string()
        })
        .collect();
    assert!(picked.len() > 1, "{picked:?}");
}

#[test]
fn more_bits_than_the_file_holds_flips_every_bit_once() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("tiny"), [0b1010_0101u8, 0]).unwrap();
    let flips = bitflip(dir.path(), &globs(&["tiny"]), 100, &mut rng(1)).unwrap();
    assert_eq!(flips.len(), 16);
    assert_eq!(fs::read(dir.path().join("tiny")).unwrap(), vec![0b0101_1010u8, 0xff]);
    assert!(bitflip(dir.path(), &globs(&["tiny"]), 0, &mut rng(1)).unwrap().is_empty());
}

#[test]
fn truncate_cuts_a_tail_and_records_the_lengths() {
    for seed in 0..20 {
        let dir = data_dir();
        let before = snapshot(dir.path());
        let cuts = truncate(dir.path(), &globs(&["streams/**/*.blk"]), &mut rng(seed)).unwrap();
        assert_eq!(cuts.len(), 1);
        let Corruption::Truncate { file, old_len, new_len } = cuts[0].clone() else { panic!("{cuts:?}") };
        assert!(file.starts_with("streams/") && file.ends_with(".blk"), "{file}");
        assert_eq!(old_len, before[&file].len() as u64);
        assert!(new_len < old_len, "nothing cut: {new_len} of {old_len}");
        let now = fs::read(dir.path().join(&file)).unwrap();
        assert_eq!(now, before[&file][..new_len as usize], "kept bytes changed");
    }
}

#[test]
fn zipf_tails_are_mostly_small_and_always_in_range() {
    let mut r = rng(2);
    let len = 1_000_000;
    let tails: Vec<u64> = (0..10_000).map(|_| zipf_tail_len(len, &mut r)).collect();
    assert!(tails.iter().all(|&k| (1..=len).contains(&k)));
    let small = tails.iter().filter(|&&k| k <= 1000).count();
    let large = tails.iter().filter(|&&k| k > 100_000).count();
    // P(k <= 1000) = ln(1001)/ln(1000001) ~ 0.5; P(k > 100000) ~ 0.17.
    assert!((4_500..5_500).contains(&small), "{small}");
    assert!((1_300..2_100).contains(&large), "{large}");
    assert_eq!(zipf_tail_len(1, &mut r), 1);
}

#[test]
fn glob_semantics_follow_gitignore() {
    let dir = data_dir();
    // No slash: any depth. With a slash: anchored at the data dir, `*` stays in one directory.
    let top = truncate(dir.path(), &globs(&["top.*"]), &mut rng(0)).unwrap();
    assert_eq!(top[0].file(), "top.blk");
    let err = bitflip(dir.path(), &globs(&["streams/*.blk"]), 1, &mut rng(0)).unwrap_err();
    assert!(matches!(err, DiskError::NoMatch { .. }), "{err}");
    let s2 = bitflip(dir.path(), &globs(&["streams/s2/**"]), 1, &mut rng(0)).unwrap();
    assert_eq!(s2[0].file(), "streams/s2/msgs/1.blk");
    // The NATS target's default: `$` is literal, each `*` one path component.
    let nats = tempfile::tempdir().unwrap();
    fs::create_dir_all(nats.path().join("jetstream/$G/streams/jepsen/msgs")).unwrap();
    fs::write(nats.path().join("jetstream/$G/streams/jepsen/msgs/1.blk"), b"block").unwrap();
    fs::write(nats.path().join("jetstream/$G/streams/jepsen/meta.inf"), b"meta").unwrap();
    let hit = bitflip(nats.path(), &globs(&["jetstream/$G/streams/*/msgs/*.blk"]), 1, &mut rng(0)).unwrap();
    assert_eq!(hit[0].file(), "jetstream/$G/streams/jepsen/msgs/1.blk");
}

#[cfg(unix)]
#[test]
fn symlinks_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("victim.blk"), b"do not touch").unwrap();
    std::os::unix::fs::symlink(outside.path().join("victim.blk"), dir.path().join("link.blk")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
    let err = bitflip(dir.path(), &globs(&["*.blk"]), 1, &mut rng(0)).unwrap_err();
    assert!(matches!(err, DiskError::NoMatch { .. }), "{err}");
    assert_eq!(fs::read(outside.path().join("victim.blk")).unwrap(), b"do not touch");
}

#[test]
fn errors_name_the_glob_and_the_data_dir() {
    let dir = data_dir();
    let err = bitflip(dir.path(), &globs(&["*.wal"]), 1, &mut rng(0)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("*.wal") && msg.contains(&dir.path().display().to_string()), "{msg}");
    let err = truncate(dir.path(), &globs(&["empty.blk"]), &mut rng(0)).unwrap_err();
    assert!(matches!(err, DiskError::NoMatch { matched_empty: 1, .. }), "{err}");
    let err = bitflip(dir.path(), &globs(&["[unclosed"]), 1, &mut rng(0)).unwrap_err();
    assert!(matches!(err, DiskError::BadGlob { .. }) && err.to_string().contains("[unclosed"), "{err}");
    assert!(matches!(truncate(dir.path(), &[], &mut rng(0)).unwrap_err(), DiskError::BadGlob { .. }));
    let missing = dir.path().join("no-such-dir");
    let err = bitflip(&missing, &globs(&["*"]), 1, &mut rng(0)).unwrap_err();
    assert!(matches!(err, DiskError::Io { .. }) && err.to_string().contains("no-such-dir"), "{err}");
    // Nothing was changed by the failed calls.
    assert_eq!(snapshot(dir.path()), snapshot(data_dir().path()));
}

#[test]
fn corruptions_become_events() {
    let flip = Corruption::Bitflip { file: "msgs/1.blk".into(), offset: 17, bit: 3, before: 0x10, after: 0x18 };
    let line = serde_json::to_string(&flip.to_event(5, "n2")).unwrap();
    assert_eq!(
        line,
        r#"{"t_ns":5,"kind":"bitflip","nodes":["n2"],"after":24,"before":16,"bit":3,"file":"msgs/1.blk","offset":17}"#
    );
    let cut = Corruption::Truncate { file: "index.db".into(), old_len: 100, new_len: 60 };
    assert_eq!(cut.kind(), EventKind::Truncate);
    assert_eq!(
        serde_json::to_string(&cut.to_event(9, "n1")).unwrap(),
        r#"{"t_ns":9,"kind":"truncate","nodes":["n1"],"file":"index.db","new_len":60,"old_len":100}"#
    );
}

#[test]
fn fixed_minority_is_a_seeded_strict_minority() {
    let five = jetsam_core::scenario::node_names(5);
    let three = jetsam_core::scenario::node_names(3);
    assert_eq!(pick_fixed_minority(&five, &mut rng(1)).len(), 2);
    assert_eq!(pick_fixed_minority(&three, &mut rng(1)).len(), 1);
    assert!(pick_fixed_minority(&jetsam_core::scenario::node_names(2), &mut rng(1)).is_empty());
    let mut reversed = five.clone();
    reversed.reverse();
    let a = pick_fixed_minority(&five, &mut rng(7));
    assert_eq!(a, pick_fixed_minority(&reversed, &mut rng(7)));
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(a, sorted);
    assert!(a.iter().all(|n| five.contains(n)));
}
