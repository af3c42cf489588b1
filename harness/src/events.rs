//! `events.jsonl` as the run goes: one line per injection, heal and warning,
//! written and flushed when it happens, stamped with the run clock (the same
//! origin as the history), under a lock so lines are in time order.
//!
//! This module records events; it does not cause them.

use jetsam_core::event::{Event, EventKind};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// The events file could not be written. Environment error (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("failed to write {}: {source}; check free space and permissions of the run folder", path.display())]
pub struct EventLogError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The run's event log.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    start: Instant,
    file: Mutex<std::fs::File>,
    count: std::sync::atomic::AtomicU64,
}

impl EventLog {
    /// Creates (truncates) `path`; `start` is the run clock's origin.
    pub fn create(path: &Path, start: Instant) -> Result<EventLog, EventLogError> {
        let file = std::fs::File::create(path).map_err(|source| EventLogError { path: path.to_path_buf(), source })?;
        Ok(EventLog { path: path.to_path_buf(), start, file: Mutex::new(file), count: Default::default() })
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).expect("a run lasts less than 584 years")
    }

    /// Writes one event now; `details` are kind-specific fields.
    pub fn record<K: AsRef<str>>(
        &self,
        kind: EventKind,
        nodes: Vec<String>,
        details: impl IntoIterator<Item = (K, serde_json::Value)>,
    ) -> Result<Event, EventLogError> {
        self.record_with(|t_ns| {
            let mut event = Event::new(t_ns, kind, nodes);
            for (k, v) in details {
                event = event.with(k.as_ref(), v);
            }
            event
        })
    }

    /// Writes the event `make` builds from the current run time (for
    /// injectors that build their own events, e.g. a partition's).
    pub fn record_with(&self, make: impl FnOnce(u64) -> Event) -> Result<Event, EventLogError> {
        let mut file = self.file.lock().expect("event log lock");
        // Stamped under the lock so the file is in time order.
        let t_ns = self.now_ns();
        let event = make(t_ns);
        assert_eq!(event.t_ns, t_ns, "an event carries the time it was recorded at");
        let mut line = serde_json::to_vec(&event).expect("an event always serializes");
        line.push(b'\n');
        // One write per line, unbuffered: a crashed controller leaves every event written so far.
        file.write_all(&line).map_err(|source| EventLogError { path: self.path.clone(), source })?;
        if event.kind.is_fault() {
            self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(event)
    }

    /// Faults injected so far.
    pub fn faults(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}
