//! The undo-log model: tracking files, saving pre-images, and what a
//! successful sync makes durable.

use super::*;

impl Tracer {
    /// Starts tracking `t` if it is not tracked yet (its size now is its synced size).
    pub(super) fn track(&mut self, t: &Target) -> io::Result<&mut Tracked> {
        if !self.files.contains_key(&t.key) {
            let path = self.undo_dir.join(t.key.log_name());
            let log = undo::open_append(&path, 0)?;
            let mut buf = Vec::new();
            undo::encode_header(&mut buf, t.size, now_ns(), &t.rel);
            let mut tracked = Tracked {
                log,
                log_len: 0,
                generation: self.next_generation(),
                rel: t.rel.clone(),
                size_before: t.size,
                pages: HashSet::new(),
                syncs_in_flight: 0,
                epoch: None,
                reader: None,
            };
            tracked.append(&buf)?;
            self.files.insert(t.key, tracked);
        }
        let tracked = self.files.get_mut(&t.key).expect("inserted above");
        if tracked.reader.is_none() {
            tracked.reader = Some(File::open(&t.open_path)?);
        }
        Ok(tracked)
    }

    /// Saves pre-images of the not-yet-saved pages among `pages` (then the
    /// call may run). Pages wholly past the synced size get an empty pre-image.
    pub(super) fn save_pages(&mut self, t: &Target, pages: impl Iterator<Item = u64>) -> io::Result<()> {
        let now = now_ns();
        let tracked = self.track(t)?;
        let mut buf = Vec::new();
        let mut short = Vec::new();
        let mut page = vec![0u8; PAGE_SIZE as usize];
        for idx in pages {
            let known = tracked.pages.contains(&idx);
            let (record, synced_size) = match tracked.epoch.as_mut() {
                // While a sync runs, a known page's first write is logged again.
                Some(e) => (e.seen.insert(idx) || !known, if known { e.size } else { tracked.size_before }),
                None => (!known, tracked.size_before),
            };
            if !record {
                continue;
            }
            let start = idx * PAGE_SIZE;
            let want = synced_size.saturating_sub(start).min(PAGE_SIZE) as usize;
            let reader = tracked.reader.as_ref().expect("track opens the reader");
            let mut got = 0;
            while got < want {
                match reader.read_at(&mut page[got..want], start + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if got < want && !known {
                // The file is shorter than its synced size without a logged
                // truncation (a racing call): the missing bytes read as zeros.
                short.push(idx);
            }
            page[got..want].fill(0);
            undo::encode_page(&mut buf, idx, now, &page[..want]);
            tracked.pages.insert(idx);
        }
        if !buf.is_empty() {
            tracked.append(&buf)?;
        }
        if !short.is_empty() {
            self.warn(&format!("pages {short:?} of {} were shorter than their synced size", t.rel));
        }
        Ok(())
    }

    pub(super) fn write_at(&mut self, t: Target, offset: u64, len: u64, durable: bool) -> Resume {
        if let Some(audit) = self.audit.as_mut()
            && !durable
            && len > 0
        {
            audit.write(now_ns(), t.key.dev, t.key.ino);
        }
        if durable && !self.files.contains_key(&t.key) {
            // Everything else in the file is synced and this write is
            // durable on return: nothing to undo.
            return Resume::Cont;
        }
        let pages = if len == 0 { 0..0 } else { offset / PAGE_SIZE..(offset.saturating_add(len) - 1) / PAGE_SIZE + 1 };
        if let Err(e) = self.save_pages(&t, pages) {
            return self.log_failed(&t, e);
        }
        if durable { Resume::Exit(Pending::Durable { key: t.key, offset }) } else { Resume::Cont }
    }

    pub(super) fn truncate_to(&mut self, t: Target, new_len: u64) -> Resume {
        let size_before = self.files.get(&t.key).map_or(t.size, |f| f.size_before);
        let pages = if new_len < size_before { new_len / PAGE_SIZE..(size_before - 1) / PAGE_SIZE + 1 } else { 0..0 };
        match self.save_pages(&t, pages) {
            Ok(()) => Resume::Cont,
            Err(e) => self.log_failed(&t, e),
        }
    }

    /// The undo log could not be written: the call must not run unlogged,
    /// so it fails with EIO (the node sees a disk error) and we say why.
    pub(super) fn log_failed(&self, t: &Target, e: io::Error) -> Resume {
        eprintln!(
            "jetsam-tracer: failed to write the undo log for {} in {}: {e}; failing the call with EIO",
            t.rel,
            self.undo_dir.display()
        );
        Resume::Fail(libc::EIO)
    }

    pub(super) fn record_durable(&mut self, key: FileKey, offset: u64, n: u64) {
        let Some(tracked) = self.files.get_mut(&key) else { return };
        let Some(reader) = tracked.reader.as_ref() else { return };
        let mut data = vec![0u8; n as usize];
        let result = reader.read_exact_at(&mut data, offset).and_then(|()| {
            let mut buf = Vec::new();
            undo::encode_patch(&mut buf, offset, &data);
            tracked.append(&buf)
        });
        if let Err(e) = result {
            eprintln!("jetsam-tracer: failed to record a durable write of {n} bytes at {offset}: {e}");
        }
    }

    /// A sync of these files is about to run: start watching for re-dirtied pages.
    pub(super) fn begin_sync(
        &mut self,
        snaps: Vec<SyncSnapshot>,
        counted: Option<Counted>,
        all_upto: Option<u64>,
    ) -> Resume {
        for snap in &snaps {
            if let Some(t) = self.files.get_mut(&snap.key) {
                t.syncs_in_flight += 1;
                t.epoch = Some(SyncEpoch { size: snap.size.unwrap_or(t.size_before), seen: HashSet::new() });
            }
        }
        Resume::Exit(Pending::Sync(snaps, counted, all_upto))
    }

    /// A sync returned (either way): stop watching once none runs.
    pub(super) fn end_sync(&mut self, snap: SyncSnapshot) {
        if let Some(t) = self.files.get_mut(&snap.key)
            && t.generation == snap.generation
        {
            t.syncs_in_flight = t.syncs_in_flight.saturating_sub(1);
            if t.syncs_in_flight == 0 {
                t.epoch = None;
            }
        }
    }

    pub(super) fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    /// Snapshots of the tracked files `which` selects, for a sync starting now.
    pub(super) fn snapshots(&self, which: impl Fn(FileKey) -> bool) -> Vec<SyncSnapshot> {
        let mut out: Vec<SyncSnapshot> = self
            .files
            .iter()
            .filter(|(k, _)| which(**k))
            .map(|(k, t)| SyncSnapshot {
                key: *k,
                generation: t.generation,
                log_len: t.log_len,
                size: t.reader.as_ref().and_then(|r| r.metadata().ok()).map(|m| m.len()),
            })
            .collect();
        out.sort_by_key(|s| s.key);
        out
    }

    /// A sync that started at `snap` succeeded. Without records from while it
    /// ran the log goes; otherwise the log is rewritten to hold only those
    /// records, with the size at the sync's start as the new synced size (a
    /// write racing a sync counts as unsynced: the worst case).
    pub(super) fn synced(&mut self, snap: SyncSnapshot) {
        // Taken up front (the borrow of `files` below forbids it later);
        // unused numbers are harmless.
        let generation = self.next_generation();
        let Some(tracked) = self.files.get(&snap.key) else { return };
        if tracked.generation != snap.generation {
            // The log was dropped and begun again while the sync ran: all of
            // it is newer than the sync.
            return;
        }
        if tracked.log_len == snap.log_len {
            self.drop_log(snap.key);
            return;
        }
        let Some(size) = snap.size else {
            // Nothing known about the file at the sync's start: keep the whole log.
            return;
        };
        let path = self.undo_dir.join(snap.key.log_name());
        let tmp = self.undo_dir.join(format!("{}.tmp", snap.key.log_name()));
        let result = (|| -> io::Result<Tracked> {
            let bytes = fs::read(&path)?;
            let tail = bytes.get(snap.log_len as usize..tracked.log_len as usize).ok_or_else(|| {
                io::Error::other(format!("log is {} bytes, expected {}", bytes.len(), tracked.log_len))
            })?;
            let mut buf = Vec::with_capacity(tail.len() + 64);
            undo::encode_header(&mut buf, size, now_ns(), &tracked.rel);
            buf.extend_from_slice(tail);
            let parsed = undo::parse(snap.key, &buf)
                .filter(|l| l.valid_len == buf.len() as u64)
                .ok_or_else(|| io::Error::other("the records appended during the sync do not parse"))?;
            fs::write(&tmp, &buf)?;
            fs::rename(&tmp, &path)?;
            Ok(Tracked {
                log: undo::open_append(&path, buf.len() as u64)?,
                log_len: buf.len() as u64,
                generation,
                rel: tracked.rel.clone(),
                size_before: size,
                pages: parsed.pages.keys().copied().collect(),
                syncs_in_flight: 0,
                epoch: None,
                reader: tracked.reader.as_ref().map(File::try_clone).transpose()?,
            })
        })();
        match result {
            Ok(mut t) => {
                if let Some(old) = self.files.get_mut(&snap.key) {
                    t.syncs_in_flight = old.syncs_in_flight;
                    t.epoch = old.epoch.take();
                }
                self.files.insert(snap.key, t);
            }
            Err(e) => eprintln!(
                "jetsam-tracer: failed to trim the undo log {} after a sync: {e}; keeping all of it",
                path.display()
            ),
        }
    }

    pub(super) fn drop_log(&mut self, key: FileKey) {
        if self.files.remove(&key).is_some() {
            let path = self.undo_dir.join(key.log_name());
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                eprintln!("jetsam-tracer: failed to remove the synced undo log {}: {e}", path.display());
            }
        }
    }
}

impl Tracked {
    pub(super) fn append(&mut self, records: &[u8]) -> io::Result<()> {
        undo::append(&mut self.log, records)?;
        self.log_len += records.len() as u64;
        Ok(())
    }
}
