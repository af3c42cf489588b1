//! Reading a tracee's state through /proc and process_vm_readv.

use super::*;

/// `pos` and `flags` (octal) of an open file description.
pub(super) fn fdinfo(tid: i32, fd: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}")).unwrap_or_default();
    let mut pos = 0;
    let mut flags = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pos:") {
            pos = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("flags:") {
            flags = u64::from_str_radix(v.trim(), 8).unwrap_or(0);
        }
    }
    (pos, flags)
}

/// Reads tracee memory; None if any of it is unreadable.
pub(super) fn read_mem(tid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
    // SAFETY: local points to `len` writable bytes; remote is only read by the kernel.
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    (n == len as isize).then_some(buf)
}

pub(super) fn read_u64(tid: i32, addr: u64) -> Option<u64> {
    read_mem(tid, addr, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// A NUL-terminated string of at most PATH_MAX bytes, read page by page so
/// a string near the end of a mapping does not fail.
pub(super) fn read_cstring(tid: i32, addr: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < libc::PATH_MAX as usize {
        let chunk = (PAGE_SIZE - at % PAGE_SIZE) as usize;
        let bytes = read_mem(tid, at, chunk)?;
        if let Some(nul) = bytes.iter().position(|&b| b == 0) {
            out.extend_from_slice(&bytes[..nul]);
            return Some(out);
        }
        out.extend_from_slice(&bytes);
        at += chunk as u64;
    }
    None
}

/// Total length of an iovec array (capped at IOV_MAX entries).
pub(super) fn iov_len(tid: i32, addr: u64, count: u64) -> u64 {
    let count = count.min(1024) as usize;
    let Some(bytes) = read_mem(tid, addr, count * 16) else { return 0 };
    bytes.chunks_exact(16).map(|c| u64::from_le_bytes(c[8..16].try_into().expect("8 bytes"))).sum()
}

/// Lexical normalisation (".", ".."), enough to compare against the data dir.
pub(super) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The absolute, normalized path a syscall's path argument names (relative
/// ones against the thread's cwd or `dirfd`), or `None` when unreadable.
pub(super) fn full_path(tid: i32, dirfd: i32, addr: u64) -> Option<PathBuf> {
    let raw = PathBuf::from(OsString::from_vec(read_cstring(tid, addr)?));
    let full = if raw.is_absolute() {
        raw
    } else {
        let base = if dirfd == libc::AT_FDCWD {
            fs::read_link(format!("/proc/{tid}/cwd")).ok()?
        } else {
            fs::read_link(format!("/proc/{tid}/fd/{dirfd}")).ok()?
        };
        base.join(raw)
    };
    Some(normalize(&full))
}
