//! Small durable files: the term/vote file, the catch-up marker, repair.

use super::*;

/// Writes a small file durably: a temp file, fsync, rename, directory fsync.
pub(super) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(bytes).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    fsync_dir(dir)
}

pub(super) fn write_meta(dir: &Path, meta: Meta) -> Result<(), StorageError> {
    let body = serde_json::to_vec(&meta).expect("meta serializes");
    let mut bytes = crc32c::crc32c(&body).to_le_bytes().to_vec();
    bytes.extend_from_slice(&body);
    write_durably(dir, "meta", &bytes)
}

pub(super) fn catch_up_marker_exists(dir: &Path) -> Result<bool, StorageError> {
    let path = dir.join(CATCH_UP_FILE);
    match fs::symlink_metadata(&path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::Io { action: "look for", path, source: e }),
    }
}

/// `--repair`: wipes the log of a data dir whose log is damaged, so the
/// node restarts empty as a non-voting catch-up member. `damage` says what
/// was found (it goes into the marker, for people).
///
/// Steps, each durable before the next, so a crash anywhere leaves either a
/// damaged log (refused again, or repaired again with `--repair`) or a
/// marked, possibly shorter, log that catches up without voting:
/// 1. the catch-up marker;
/// 2. the term/vote file, one term later and with no vote: the node has
///    voted in no term above the one it held, so it can never vote twice in
///    a term, and a leader of the old term (which may still count this
///    node's acknowledgements from before the wipe) learns the higher term
///    from its first reply and steps down (docs/node.md, "Repair");
/// 3. the segment files, last first, then the log directory's fsync.
///
/// Refuses ([`StorageError::RepairRefused`]) when the term/vote file itself
/// is damaged: the node would not know in which terms it already voted.
pub fn repair(dir: &Path, damage: &str) -> Result<Repaired, StorageError> {
    let old = match read_meta(dir) {
        Ok(meta) => meta,
        Err(StorageError::Corrupt { file, detail, .. }) => return Err(StorageError::RepairRefused { file, detail }),
        Err(e) => return Err(e),
    };
    let new = Meta { term: old.term + 1, voted_for: None };
    let marker = serde_json::json!({ "repaired": damage, "term_before": old.term, "term_after": new.term });
    let mut text = serde_json::to_vec_pretty(&marker).expect("marker serializes");
    text.push(b'\n');
    write_durably(dir, CATCH_UP_FILE, &text)?;
    write_meta(dir, new)?;
    let log_dir = dir.join("log");
    let mut removed = Vec::new();
    if log_dir.exists() {
        for item in fs::read_dir(&log_dir).map_err(io_err("list", &log_dir))? {
            let path = item.map_err(io_err("list", &log_dir))?.path();
            if path.extension().is_some_and(|x| x == "seg") {
                removed.push(path);
            }
        }
        removed.sort();
        removed.reverse();
        for path in &removed {
            fs::remove_file(path).map_err(io_err("remove", path))?;
        }
        fsync_dir(&log_dir)?;
    }
    Ok(Repaired { old, new, removed })
}

/// Reads `<data>/meta` (term and vote); a missing file is term 0, no vote.
pub fn read_meta(dir: &Path) -> Result<Meta, StorageError> {
    let path = dir.join("meta");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Meta::default()),
        Err(e) => return Err(StorageError::Io { action: "read", path, source: e }),
    };
    let corrupt = |detail: String| StorageError::Corrupt { file: path.clone(), offset: 0, detail };
    if bytes.len() < 4 {
        return Err(corrupt(format!("{} bytes, too short for a CRC", bytes.len())));
    }
    let crc = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[4..]) != crc {
        return Err(corrupt("term/vote CRC mismatch".into()));
    }
    serde_json::from_slice(&bytes[4..]).map_err(|e| corrupt(format!("term/vote does not decode: {e}")))
}
