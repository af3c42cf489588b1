//! The streaming checker's per-op arrays live in temporary files mapped
//! into memory (`MAP_SHARED`), not on the heap, so its resident memory does
//! not grow with the run: a [`Trimmer`] thread looks at the process's
//! resident size every [`TRIM_INTERVAL_MS`] and, above its budget
//! ([`RSS_BUDGET_BYTES`] by default), drops the mappings' resident pages
//! (`madvise(MADV_DONTNEED)`). For a shared file mapping that loses
//! nothing: the pages stay in the page cache (and are written back to the
//! file like any dirty page), and the next access maps them again, with
//! their current content. Below the budget nothing is dropped, so a run
//! that fits pays nothing; above it the process holds its buffers plus the
//! pages touched since the last trim, and the kernel decides how much of
//! the rest stays cached, exactly as for the other temporary files.
//!
//! This is the only module of the crate with `unsafe` code: the mapping
//! itself, the slices over it, and `madvise` on a region while the arrays
//! are in use (allowed by the kernel's rules for shared mappings quoted
//! above; it never changes what a read returns).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// How often the trimmer looks at the resident size.
pub const TRIM_INTERVAL_MS: u64 = 50;
/// Resident size above which the mapped pages are dropped: the buffers of
/// the passes (~70 MiB reading compact files, ~100 MiB reading JSON lines)
/// plus room for the arrays of ~20M writes.
pub const RSS_BUDGET_BYTES: u64 = 128 << 20;

/// The process's resident size, from /proc/self/statm (0 if unreadable:
/// then nothing is trimmed, which is only slower memory, never wrong).
fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else { return 0 };
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Mapped regions by id: (address, bytes).
type Regions = Arc<Mutex<BTreeMap<u64, (usize, usize)>>>;

/// A fixed number of `u64` words in a temporary file mapped into memory,
/// zero at the start.
pub struct MappedWords {
    ptr: std::ptr::NonNull<u64>,
    len: usize,
    id: u64,
    regions: Regions,
}

// SAFETY: the mapping is owned by this value like a Vec's buffer: shared
// references only read it, writes need `&mut self`.
unsafe impl Send for MappedWords {}
unsafe impl Sync for MappedWords {}

impl MappedWords {
    fn bytes(&self) -> usize {
        self.len * 8
    }
}

impl std::ops::Deref for MappedWords {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        // SAFETY: `ptr` maps `len` words (or is dangling with `len` 0) for
        // as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for MappedWords {
    fn deref_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedWords {
    fn drop(&mut self) {
        // Unregistered first, under the lock the trimmer holds while it
        // works: it never touches an unmapped region.
        self.regions.lock().expect("the trimmer does not panic holding the lock").remove(&self.id);
        if self.len > 0 {
            // SAFETY: the region was mapped by `Trimmer::map` with this
            // address and size, and nothing refers to it any more.
            let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes()) };
            assert_eq!(rc, 0, "munmap of a region this value mapped");
        }
    }
}

/// Maps the per-op arrays and keeps their resident pages trimmed until it
/// is dropped.
pub struct Trimmer {
    regions: Regions,
    next_id: std::sync::atomic::AtomicU64,
    /// Trims done so far (each drops every region's pages).
    trims: Arc<std::sync::atomic::AtomicU64>,
    /// Dropped to stop the thread at once (it waits on the other end).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trimmer {
    /// Starts the thread; `budget_bytes`: see [`RSS_BUDGET_BYTES`] (0: trim
    /// at every look).
    pub fn start(budget_bytes: u64) -> Trimmer {
        let regions: Regions = Arc::default();
        let trims = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = {
            let regions = Arc::clone(&regions);
            let trims = Arc::clone(&trims);
            std::thread::spawn(move || {
                let interval = std::time::Duration::from_millis(TRIM_INTERVAL_MS);
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if resident_bytes() <= budget_bytes && budget_bytes > 0 {
                        continue;
                    }
                    let regions = regions.lock().expect("no mapping panics holding the lock");
                    for (addr, bytes) in regions.values() {
                        // SAFETY: a registered region is mapped (Drop
                        // unregisters before unmapping, under this lock);
                        // MADV_DONTNEED on a shared file mapping keeps its
                        // content (see the module doc).
                        let rc = unsafe { libc::madvise(*addr as *mut libc::c_void, *bytes, libc::MADV_DONTNEED) };
                        assert_eq!(rc, 0, "madvise of a mapped region");
                    }
                    trims.fetch_add(1, Ordering::Release);
                }
            })
        };
        Trimmer { regions, next_id: 0.into(), trims, stop: Some(stop), thread: Some(thread) }
    }

    /// How many times the pages were dropped so far.
    pub fn trims(&self) -> u64 {
        self.trims.load(Ordering::Acquire)
    }

    /// `words` zero words in a new file at `path` (removed at once: the
    /// mapping keeps it alive).
    pub fn map(&self, path: &Path, words: usize) -> std::io::Result<MappedWords> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let regions = Arc::clone(&self.regions);
        if words == 0 {
            return Ok(MappedWords { ptr: std::ptr::NonNull::dangling(), len: 0, id, regions });
        }
        let bytes = words.checked_mul(8).expect("an array of at most 4 billion ops");
        let file = File::options().read(true).write(true).create_new(true).open(path)?;
        // Reserved now, not as pages are first written: a sparse file on a
        // full disk would kill the process with SIGBUS at that write (a
        // review saw it); this way a full TMPDIR is an error here.
        // SAFETY: a valid descriptor and a non-negative length.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, bytes as libc::off_t) };
        if rc != 0 {
            let _ = std::fs::remove_file(path);
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        std::fs::remove_file(path)?;
        // SAFETY: a fresh shared mapping of a file of `bytes` bytes that
        // nothing else maps; checked for failure below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // The mapping outlives the descriptor.
        drop(file);
        let ptr = std::ptr::NonNull::new(addr.cast::<u64>()).expect("mmap returns no null address");
        self.regions.lock().expect("the trimmer does not panic holding the lock").insert(id, (addr as usize, bytes));
        Ok(MappedWords { ptr, len: words, id, regions })
    }
}

impl Drop for Trimmer {
    fn drop(&mut self) {
        // The thread wakes at once when the sender is gone.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join().expect("the trimmer thread does not panic");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resident KiB of the mapping that starts at `addr` (/proc/self/smaps).
    fn region_rss_kb(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&format!("{addr:x}-")));
        lines.next().expect("the mapping is listed");
        let rss = lines.find(|l| l.starts_with("Rss:")).expect("a mapping has an Rss line");
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn trimmed_pages_keep_their_content() {
        let dir = tempfile::tempdir().unwrap();
        // Budget 0: every look trims.
        let trimmer = Trimmer::start(0);
        let mut a = trimmer.map(&dir.path().join("a"), 1 << 20).unwrap();
        assert!(a.iter().all(|w| *w == 0));
        for (i, w) in a.iter_mut().enumerate() {
            *w = i as u64 * 31;
        }
        // Two trims more: at least one began after the last write. Nothing
        // touches the region since, so its own resident size (smaps, which
        // other tests do not move, unlike the process's) is ~0. (The old
        // test looked for the 8 MiB resident right after writing them: on
        // a slow debug build a trim came first.)
        let before = trimmer.trims();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while trimmer.trims() < before + 2 {
            assert!(std::time::Instant::now() < deadline, "the trimmer looks every {TRIM_INTERVAL_MS} ms");
            std::thread::sleep(std::time::Duration::from_millis(TRIM_INTERVAL_MS / 5));
        }
        assert!(region_rss_kb(a.as_ptr() as usize) < 1 << 10);
        assert!(a.iter().enumerate().all(|(i, w)| *w == i as u64 * 31));
        assert!(!dir.path().join("a").exists(), "the file is unlinked at once");
        let empty = trimmer.map(&dir.path().join("b"), 0).unwrap();
        assert!(empty.is_empty());
        drop(a);
        drop(trimmer);
    }

    /// The measure above can see pages: under a budget never reached,
    /// written pages stay resident and nothing is trimmed.
    #[test]
    fn under_the_budget_pages_stay() {
        let dir = tempfile::tempdir().unwrap();
        let trimmer = Trimmer::start(u64::MAX);
        let mut a = trimmer.map(&dir.path().join("a"), 1 << 20).unwrap();
        for (i, w) in a.iter_mut().enumerate() {
            *w = i as u64;
        }
        std::thread::sleep(std::time::Duration::from_millis(TRIM_INTERVAL_MS * 3));
        assert!(region_rss_kb(a.as_ptr() as usize) >= 8 << 10, "all 8 MiB were written");
        assert_eq!(trimmer.trims(), 0);
    }
}
