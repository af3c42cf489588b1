//! The node's event loop: one thread owns the noraft [`Node`], the storage
//! and the in-memory log, and handles client requests, peer messages and
//! timers in batches. Each batch ends with the I/O noraft asked for, in this
//! order: term and vote (always fsynced), log appends (one write), the fsync
//! the sync policy requires before anything leaves the node, outbound peer
//! messages, then client answers. Batching is the group commit: every
//! publish and every follower append that arrived together shares one fsync.
//!
//! A node repaired with `--repair` (the storage's catch-up marker exists) is
//! a non-voting catch-up member: it grants no vote and starts no election
//! until an AppendEntries call of its term's leader leaves it holding that
//! leader's log through an entry of the leader's term and at least through
//! the leader's commit index (see `Core::check_caught_up` and docs/node.md,
//! "Repair").
//!
//! It does not touch sockets (see [`crate::net`]): events come in on a
//! bounded channel and answers go out on per-connection channels, so a slow
//! client or a blackholed peer never blocks the loop. The loop and the socket
//! tasks share one thread (a current-thread tokio runtime, see [`Core::run`]):
//! a publish crosses no thread boundary on its way in or out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jetsam_core::exit;
use jetsam_core::proto::{
    self, ErrorCode, NodeStatus, ProtoError, Request, RequestBody, Response, ResponseBody, Role, StreamConfig,
    StreamInfo,
};
use jetsam_core::report::Mode;
use noraft::{Action, LogEntries, LogEntry, LogPosition, Node, NodeId, Term};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::command::{Command, LogState};
use crate::storage::{Entry, Meta, Record, Storage, StorageError};
use crate::terms::{check_terms, raft_log};
use crate::wire::{self, WireMessage};
use crate::{Bugs, SyncPolicy};

/// Most events handled in one batch (one fsync).
const BATCH_EVENTS_MAX: usize = 4096;
/// Most log entries shipped in one AppendEntries message.
const APPEND_ENTRIES_MAX: usize = 1024;
/// Most messages returned by one read.
const READ_MAX: u32 = 10_000;
/// How often the deferred writes/fsyncs of the `ack-before-*` bugs happen.
const BUG_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Consecutive replies behind a follower's match index that mean it lost its log tail.
const BEHIND_REPLIES_MAX: u32 = 3;
/// The loop wakes at least this often to run timers.
const TICK: Duration = Duration::from_millis(20);
/// After a turn that handled events, the loop polls (without sleeping) this
/// long for the next ones before it blocks. Why: on this project's 2-vCPU VM
/// a thread asleep in epoll takes ~50 µs to wake, which was most of an async
/// publish's round trip (bench-node: R1 async 2m 59k/s, p50 132 µs without;
/// 118k/s, p50 64 µs with). Bounded, and only while busy: an idle node
/// sleeps as before.
const SPIN: Duration = Duration::from_micros(100);

/// Where an answer goes: the client connection's writer, with the permit
/// that bounds that connection's requests in flight.
pub struct Reply {
    pub tx: UnboundedSender<Response>,
    pub req_id: u64,
    pub permit: OwnedSemaphorePermit,
}

impl Reply {
    pub fn send(self, body: ResponseBody) {
        // A closed connection just drops the answer; the client saw the connection end.
        let _ = self.tx.send(Response { req_id: self.req_id, body });
        drop(self.permit);
    }

    pub fn error(self, code: ErrorCode, message: impl Into<String>, definite: bool, leader_hint: Option<String>) {
        self.send(ResponseBody::Error { error: ProtoError { code, message: message.into(), definite, leader_hint } })
    }
}

pub enum Event {
    Client { req: Request, reply: Reply },
    Peer(WireMessage),
    Shutdown,
}

pub struct Options {
    pub name: String,
    /// Every node of the cluster (this one included), sorted; ids are 1-based positions.
    pub names: Vec<String>,
    pub sync: SyncPolicy,
    pub bugs: Bugs,
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    /// A publish not committed by then is answered `Timeout` (indefinite).
    pub pending_timeout: Duration,
}

enum PendingKind {
    Publish,
    Batch,
    Stream { created: bool },
}

struct Pending {
    pos: LogPosition,
    kind: PendingKind,
    reply: Reply,
    deadline: Instant,
}

pub struct Core {
    opts: Options,
    id: u64,
    node: Node,
    storage: Storage,
    log: LogState,
    meta: Meta,
    peers: BTreeMap<u64, mpsc::Sender<WireMessage>>,
    /// Command data of entries on their way into the log (from proposals and
    /// incoming AppendEntries), keyed by (term, index).
    incoming: BTreeMap<(u64, u64), Entry>,
    pending: BTreeMap<u64, Pending>,
    election_deadline: Instant,
    next_sync: Option<Instant>,
    next_bug_flush: Instant,
    /// (term, node id) of the leader this node last heard from.
    leader: Option<(u64, u64)>,
    leader_since: Instant,
    /// This node led when the previous [`Core::process_actions`] ended. noraft
    /// makes a candidate leader inside `handle_message`, before the batch's
    /// actions, so a new leadership is noticed against this, not against the
    /// role at the start of `process_actions`.
    led: bool,
    /// Last time each peer answered this node as leader (check-quorum).
    contact: BTreeMap<u64, Instant>,
    /// Consecutive replies per follower that were behind its match index.
    behind: BTreeMap<u64, u32>,
    /// Highest commit index known (survives step-down restarts of noraft's node).
    committed: u64,
    /// Log records were written in this batch and await the sync policy's fsync.
    appended: bool,
    /// An async stream's records were answered before their fsync, which the
    /// sync policy `always` still owes (see [`Core::sync_owed`]).
    sync_owed: bool,
    rng: u64,
}

/// Fatal storage failure: log it and stop (fail-stop).
fn fatal(err: StorageError) -> ! {
    tracing::error!("{err}");
    std::process::exit(exit::ENVIRONMENT);
}

impl Core {
    /// Builds the node from recovered storage (writing the bootstrap cluster
    /// config as entry 1 on a fresh data dir).
    pub fn new(
        opts: Options,
        mut storage: Storage,
        meta: Meta,
        records: Vec<Record>,
        peers: BTreeMap<u64, mpsc::Sender<WireMessage>>,
    ) -> Result<Core, String> {
        let id = opts.names.iter().position(|n| *n == opts.name).expect("own name is in the cluster") as u64 + 1;
        let all_ids: Vec<u64> = (1..=opts.names.len() as u64).collect();
        let bootstrap = Entry::Config { voters: all_ids.clone(), new_voters: vec![], non_voters: vec![] };
        let mut log = LogState::default();
        if records.is_empty() {
            let record = Record { index: 1, term: 0, entry: bootstrap.clone() };
            storage.append(std::slice::from_ref(&record)).map_err(|e| e.to_string())?;
            storage.sync().map_err(|e| e.to_string())?;
            log.push(&record);
        } else {
            if records[0].entry != bootstrap {
                return Err(format!(
                    "the data dir belongs to a cluster of other nodes (its first entry is {:?}, this cluster is {:?}); \
                     start every node with the same --peer list, or use an empty data dir",
                    records[0].entry, opts.names
                ));
            }
            for r in &records {
                log.push(r);
            }
        }
        let raft = raft_log(&log);
        check_terms(&log, &raft).map_err(|m| m.to_string())?;
        let voted_for = meta.voted_for.map(NodeId::new);
        let node = Node::restart(NodeId::new(id), Term::new(meta.term), voted_for, raft);
        let now = Instant::now();
        let next_sync = match opts.sync {
            SyncPolicy::Always => None,
            SyncPolicy::Interval(d) => Some(now + d),
        };
        let seed = now.elapsed().as_nanos() as u64 ^ (std::process::id() as u64) << 16 ^ id.wrapping_mul(0x9E37_79B9);
        Ok(Core {
            opts,
            id,
            node,
            storage,
            log,
            meta,
            peers,
            incoming: BTreeMap::new(),
            pending: BTreeMap::new(),
            election_deadline: now,
            next_sync,
            next_bug_flush: now + BUG_FLUSH_INTERVAL,
            leader: None,
            leader_since: now,
            led: false,
            contact: BTreeMap::new(),
            behind: BTreeMap::new(),
            committed: 0,
            appended: false,
            sync_owed: false,
            rng: seed | 1,
        })
    }

    fn random_u64(&mut self) -> u64 {
        // xorshift64: only election jitter depends on it.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn name_of(&self, id: u64) -> String {
        self.opts.names[id as usize - 1].clone()
    }

    fn leader_name(&self) -> Option<String> {
        if self.node.role().is_leader() {
            return Some(self.opts.name.clone());
        }
        match self.leader {
            Some((term, id)) if term == self.node.current_term().get() => Some(self.name_of(id)),
            _ => None,
        }
    }

    fn stream_async(&self) -> bool {
        self.log.config().is_some_and(|c| c.consistency == Some(Mode::Async))
    }

    /// Runs until shutdown (exits the process), as a task on the node's
    /// single-threaded runtime: socket tasks and this loop share one thread,
    /// so a publish reaches the loop and its answer reaches the socket with
    /// no hand-off between threads. A batch's I/O (and its fsync) blocks the
    /// thread on purpose: meanwhile the kernel buffers what clients and peers
    /// send, and the next batch takes all of it (group commit).
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) -> ! {
        tracing::info!(
            node = %self.opts.name,
            id = self.id,
            term = self.meta.term,
            last_index = self.log.last_index(),
            last_seq = self.log.last_seq(),
            catching_up = self.storage.catching_up(),
            "node started"
        );
        if self.storage.catching_up() {
            tracing::warn!(
                node = %self.opts.name,
                "catching up after --repair: this node grants no vote and starts no election until it holds the \
                 leader's committed log"
            );
        }
        self.process_actions();
        let mut batch = Vec::with_capacity(BATCH_EVENTS_MAX);
        // The last turn handled events: spin before sleeping (see [`SPIN`]).
        let mut busy = false;
        loop {
            // Busy: poll for [`SPIN`] before sleeping. Each yield lets the
            // runtime poll the sockets without blocking and run the socket
            // tasks, which queue what arrived.
            if busy {
                let spin_until = Instant::now() + SPIN;
                while Instant::now() < spin_until && events.is_empty() {
                    tokio::task::yield_now().await;
                }
            }
            // An event already queued needs no timer (arming one costs two
            // clock reads and a timer-wheel entry per turn).
            if let Ok(ev) = events.try_recv() {
                batch.push(ev);
            } else {
                let now = Instant::now();
                let wait = self.election_deadline.saturating_duration_since(now).min(TICK);
                match tokio::time::timeout(wait, events.recv()).await {
                    Ok(Some(ev)) => batch.push(ev),
                    Ok(None) => self.shutdown(),
                    Err(_) => {}
                }
            }
            if !batch.is_empty() {
                // Let the socket tasks read what is already buffered, so it joins this batch.
                tokio::task::yield_now().await;
                while batch.len() < BATCH_EVENTS_MAX
                    && let Ok(ev) = events.try_recv()
                {
                    batch.push(ev);
                }
            }
            busy = !batch.is_empty();
            self.turn_answering(batch.drain(..));
            if self.sync_owed {
                // Let the connection writers send this batch's answers
                // before the fsync they do not wait for (async streams).
                tokio::task::yield_now().await;
                self.pay_sync_owed();
            }
        }
    }

    /// One turn of the loop: handles `events` in order, runs the timers,
    /// then does the I/O noraft asked for (see the module doc). [`Core::run`]
    /// calls it once per batch; tests call it directly to decide which
    /// events share a batch. An [`Event::Shutdown`] exits the process.
    pub fn turn(&mut self, events: impl IntoIterator<Item = Event>) {
        self.turn_answering(events);
        self.pay_sync_owed();
    }

    /// Makes the election timer due now, as if its timeout had passed with
    /// no word from a leader (tests use it to start an election at once;
    /// the timeout reset noraft asked for at start is superseded by it).
    pub fn expire_election_timer(&mut self) {
        self.node.actions_mut().set_election_timeout = false;
        self.election_deadline = Instant::now();
    }

    /// [`Core::turn`] up to the answers: an fsync that answers do not wait
    /// for (an async stream under `always`) is left owed.
    fn turn_answering(&mut self, events: impl IntoIterator<Item = Event>) {
        for ev in events {
            self.handle(ev);
        }
        self.timers();
        self.process_actions();
    }

    /// Does the fsync the sync policy owes for records already answered.
    fn pay_sync_owed(&mut self) {
        if std::mem::take(&mut self.sync_owed)
            && let Err(e) = self.storage.sync()
        {
            fatal(e);
        }
    }

    fn shutdown(&mut self) -> ! {
        if let Err(e) = self.storage.sync() {
            fatal(e);
        }
        tracing::info!(node = %self.opts.name, "shut down cleanly after a final fsync");
        std::process::exit(exit::PASS);
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Shutdown => self.shutdown(),
            Event::Peer(msg) => self.handle_peer(msg),
            Event::Client { req, reply } => self.handle_client(req, reply),
        }
    }

    fn handle_peer(&mut self, msg: WireMessage) {
        let from = wire::sender(&msg);
        if from == self.id || from == 0 || from as usize > self.opts.names.len() {
            tracing::warn!(from, "dropped a peer message from an unknown node id");
            return;
        }
        if let WireMessage::VoteCall { term, last, .. } = &msg
            && self.storage.catching_up()
        {
            // Dropped unanswered, as a lost message: a vote from a node that
            // may lack committed entries could elect a leader missing them.
            tracing::info!(
                node = %self.opts.name,
                candidate = %self.name_of(from),
                term,
                candidate_last = ?last,
                "not voting: catching up after --repair"
            );
            return;
        }
        match &msg {
            WireMessage::AppendCall { term, prev, entries, .. } => {
                let mut index = prev.1;
                let mut entry_term = prev.0;
                for e in entries {
                    index += 1;
                    if let Entry::Term(t) = e {
                        entry_term = *t;
                    }
                    self.incoming.insert((entry_term, index), e.clone());
                }
                if *term >= self.node.current_term().get() {
                    self.leader = Some((*term, from));
                }
            }
            WireMessage::AppendReply { term, last, .. } => {
                if *term == self.node.current_term().get() {
                    self.contact.insert(from, Instant::now());
                    if let Some(matched) = self.node.follower_match_index(NodeId::new(from))
                        && last.1 < matched.get()
                    {
                        // noraft ignores such replies as delayed; on our
                        // in-order links they mean the follower lost the
                        // tail of its log (power loss with interval sync, a
                        // truncated file), and it would never catch up
                        // under this leader.
                        let count = self.behind.entry(from).or_insert(0);
                        *count += 1;
                        if *count >= BEHIND_REPLIES_MAX {
                            let why = format!(
                                "{} reports its log ends at {} below the {} it had acknowledged (it lost its log \
                                 tail); a new term resets replication",
                                self.name_of(from),
                                last.1,
                                matched.get()
                            );
                            self.step_down(why);
                            return;
                        }
                    } else {
                        self.behind.remove(&from);
                    }
                }
            }
            WireMessage::VoteReply { term, .. } => {
                if *term == self.node.current_term().get() {
                    self.contact.insert(from, Instant::now());
                }
            }
            WireMessage::VoteCall { .. } => {}
        }
        // Only an AppendEntries call changes noraft's log (besides our own
        // proposals); around it, the log here must equal noraft's and no
        // append may wait in noraft's queue (see `persist_queued`).
        let is_append = matches!(msg, WireMessage::AppendCall { .. });
        if is_append {
            self.persist_queued();
        }
        let raft_msg = wire::from_wire(&msg);
        if let Err(e) = self.node.handle_message(&raft_msg) {
            tracing::error!("noraft rejected a message from node {from}: {e}; stopping (fail-stop)");
            std::process::exit(exit::ENVIRONMENT);
        }
        if !is_append {
            return;
        }
        self.persist_queued();
        // On a divergence noraft drops the conflicting suffix from its own
        // log without asking for storage I/O until it finds the common root.
        // Mirror it now, so storage, reads and a later rebuild of noraft's
        // log never show entries noraft no longer has. (Those entries
        // conflict with the leader's log, so none of them was committed.)
        let raft_last = self.node.log().last_position().index.get();
        if raft_last < self.log.last_index() {
            tracing::info!(node = %self.opts.name, from = raft_last + 1, to = self.log.last_index(), "removing a log suffix that conflicts with the leader's");
            if let Err(e) = self.storage.truncate_after(raft_last) {
                fatal(e);
            }
            self.log.truncate_after(raft_last);
        }
        assert_eq!(
            self.log.last_index(),
            raft_last,
            "after an AppendEntries call the stored log ends where noraft's does"
        );
        if let WireMessage::AppendCall { term, commit, .. } = &msg
            && self.storage.catching_up()
        {
            self.check_caught_up(from, *term, *commit);
        }
    }

    /// Ends a repaired node's catch-up once the AppendEntries call it just
    /// handled (from `from`, in `term`, with the leader's `commit`) leaves it
    /// holding the leader's log through an entry of the leader's term and
    /// through `commit`. Why that is enough (docs/node.md, "Repair"): the
    /// repair moved this node's term past every term it acted in before the
    /// wipe, so the leader was elected without it and holds every entry
    /// committed in earlier terms, all of which precede the leader's first
    /// entry of its own term; an entry of the leader's term can only have
    /// come from the leader, so (Raft's log matching) this log equals the
    /// leader's up to its end. Entries committed later in the term are
    /// counted on real answers of this node, as for any follower.
    fn check_caught_up(&mut self, from: u64, term: u64, commit: u64) {
        let current = self.node.current_term().get();
        let last = self.log.last_index();
        if term != current || self.log.term_at(last) != Some(current) || last < commit {
            return;
        }
        assert!(!self.node.role().is_leader(), "a catch-up member never leads");
        if let Err(e) = self.storage.finish_catch_up() {
            fatal(e);
        }
        tracing::info!(
            node = %self.opts.name,
            leader = %self.name_of(from),
            term,
            last_index = last,
            leader_commit = commit,
            "caught up after --repair: holds the leader's log through its term's entries and its commit index; \
             voting again"
        );
    }

    /// Does the storage part of noraft's queued actions now, in their order:
    /// term and vote (fsynced), then the log append (written; the sync
    /// policy's fsync comes at the end of the batch, before anything leaves
    /// the node). Timers and messages stay queued for the end of the batch.
    ///
    /// Why not once per batch: noraft queues a single append and merges each
    /// later one into it, which assumes the later one starts inside the
    /// queued one. An AppendEntries call breaks that when it starts below
    /// the queued append: a leader that resumes after a pause, proposes the
    /// publishes that waited for it, and then hears the new leader in the
    /// same batch; or a divergence, which cuts noraft's log without any
    /// action, followed by the leader's catch-up. noraft then fails its
    /// `debug_assert!` in `LogEntries::append_unchecked` (log.rs:616), and a
    /// release build writes a garbled append. Persisting right before and
    /// after each AppendEntries call keeps noraft's queue empty whenever it
    /// handles one, and keeps `self.log` equal to noraft's log after it.
    fn persist_queued(&mut self) {
        let actions = self.node.actions_mut();
        let save_meta = std::mem::take(&mut actions.save_current_term) | std::mem::take(&mut actions.save_voted_for);
        let append = actions.append_log_entries.take();
        if save_meta {
            self.save_meta();
        }
        if let Some(entries) = append {
            self.append(&entries);
            self.appended = true;
        }
    }

    /// Saves term and vote (fsynced) if they changed.
    fn save_meta(&mut self) {
        let meta = Meta { term: self.node.current_term().get(), voted_for: self.node.voted_for().map(|n| n.get()) };
        if meta != self.meta {
            if let Err(e) = self.storage.save_meta(meta) {
                fatal(e);
            }
            self.meta = meta;
        }
    }

    fn not_leader(&self, reply: Reply) {
        let hint = self.leader_name();
        let message = match &hint {
            Some(l) => format!("{} is not the leader; {l} is", self.opts.name),
            None => format!("{} is not the leader and knows no leader yet; retry shortly", self.opts.name),
        };
        reply.error(ErrorCode::NotLeader, message, true, hint);
    }

    fn info(&self, config: &StreamConfig, upto: u64) -> StreamInfo {
        let last_seq = self.log.last_seq_at(upto);
        StreamInfo {
            config: config.clone(),
            first_seq: u64::from(last_seq > 0),
            last_seq,
            messages: last_seq,
            leader: self.leader_name(),
        }
    }

    fn commit_index(&self) -> u64 {
        self.committed.max(self.node.commit_index().get())
    }

    fn handle_client(&mut self, req: Request, reply: Reply) {
        let is_leader = self.node.role().is_leader();
        match req.body {
            RequestBody::Status => {
                let role = match self.node.role() {
                    _ if self.storage.catching_up() => Role::Learner,
                    noraft::Role::Leader => Role::Leader,
                    noraft::Role::Follower => Role::Follower,
                    noraft::Role::Candidate => Role::Candidate,
                };
                let catch_up = if self.storage.catching_up() { "; catching up after --repair, not voting" } else { "" };
                let status = NodeStatus {
                    name: self.opts.name.clone(),
                    role,
                    term: self.node.current_term().get(),
                    leader: self.leader_name(),
                    commit_index: self.commit_index(),
                    last_seq: self.log.last_seq(),
                    healthy: true,
                    detail: Some(format!("last_index {} sync {}{catch_up}", self.log.last_index(), self.opts.sync)),
                };
                reply.send(ResponseBody::Status { status });
            }
            RequestBody::ReadLocal { stream, from_seq, max, ids_only } => {
                if self.log.config().is_some_and(|c| c.name != stream) {
                    return reply.error(ErrorCode::NoStream, format!("no stream {stream:?} here"), true, None);
                }
                let last = self.log.last_seq();
                let messages = self.log.messages(from_seq, last, max.clamp(1, READ_MAX) as usize, ids_only);
                let more = messages.last().is_some_and(|m| m.seq < last);
                reply.send(ResponseBody::Messages { messages, more });
            }
            RequestBody::ReadCluster { stream, from_seq, max, ids_only } => {
                if !is_leader {
                    return self.not_leader(reply);
                }
                let commit = self.commit_index();
                match self.log.config_at(commit) {
                    Some(c) if c.name == stream => {}
                    _ => return reply.error(ErrorCode::NoStream, format!("no stream {stream:?}"), true, None),
                }
                let last = self.log.last_seq_at(commit);
                let messages = self.log.messages(from_seq, last, max.clamp(1, READ_MAX) as usize, ids_only);
                let more = messages.last().is_some_and(|m| m.seq < last);
                reply.send(ResponseBody::Messages { messages, more });
            }
            RequestBody::StreamInfo { stream } => {
                let commit = self.commit_index();
                match self.log.config_at(commit) {
                    Some(c) if c.name == stream => {
                        let info = self.info(c, commit);
                        reply.send(ResponseBody::Info { info })
                    }
                    _ => reply.error(ErrorCode::NoStream, format!("no stream {stream:?}"), true, self.leader_name()),
                }
            }
            RequestBody::CreateStream { config } => {
                if let Err((code, message)) = proto::check_create(&config, self.opts.names.len() as u32) {
                    return reply.error(code, message, true, None);
                }
                if !is_leader {
                    return self.not_leader(reply);
                }
                match self.log.config() {
                    Some(existing) if *existing == config => {
                        let info = self.info(existing, self.log.last_index());
                        reply.send(ResponseBody::Created { info })
                    }
                    Some(existing) => reply.error(
                        ErrorCode::StreamExists,
                        format!(
                            "stream {:?} exists with another config ({existing:?}); use update_stream",
                            existing.name
                        ),
                        true,
                        None,
                    ),
                    None => {
                        self.propose(Command::CreateStream { config }, PendingKind::Stream { created: true }, reply)
                    }
                }
            }
            RequestBody::UpdateStream { config } => {
                if !is_leader {
                    return self.not_leader(reply);
                }
                let Some(existing) = self.log.config() else {
                    return reply.error(ErrorCode::NoStream, format!("no stream {:?}", config.name), true, None);
                };
                if let Err((code, message)) = proto::check_update(existing, &config, self.opts.names.len() as u32) {
                    return reply.error(code, message, true, None);
                }
                self.propose(Command::UpdateStream { config }, PendingKind::Stream { created: false }, reply)
            }
            RequestBody::Publish { stream, id, payload } => {
                if !is_leader {
                    return self.not_leader(reply);
                }
                if self.log.config().is_none_or(|c| c.name != stream) {
                    return reply.error(ErrorCode::NoStream, format!("no stream {stream:?}"), true, None);
                }
                self.propose(Command::Publish { id, payload }, PendingKind::Publish, reply)
            }
            RequestBody::PublishBatch { stream, messages } => {
                if !is_leader {
                    return self.not_leader(reply);
                }
                if self.log.config().is_none_or(|c| c.name != stream) {
                    return reply.error(ErrorCode::NoStream, format!("no stream {stream:?}"), true, None);
                }
                if self.stream_async() {
                    return reply.error(
                        ErrorCode::BatchOnAsync,
                        format!("batch publish is not allowed on async stream {stream:?} (publish one at a time)"),
                        true,
                        None,
                    );
                }
                if messages.is_empty() {
                    return reply.error(ErrorCode::BadRequest, "a batch needs at least one message", true, None);
                }
                self.propose(Command::Batch { messages }, PendingKind::Batch, reply)
            }
        }
    }

    fn propose(&mut self, cmd: Command, kind: PendingKind, reply: Reply) {
        let pos = self.node.propose_command();
        assert!(!pos.is_invalid(), "a leader can always propose");
        self.incoming.insert((pos.term.get(), pos.index.get()), Entry::Cmd(cmd));
        let deadline = Instant::now() + self.opts.pending_timeout;
        let old = self.pending.insert(pos.index.get(), Pending { pos, kind, reply, deadline });
        assert!(old.is_none(), "one pending request per log index");
    }

    fn timers(&mut self) {
        let now = Instant::now();
        // This turn's events already asked noraft for a new timeout (a
        // leader's append or a granted vote): the deadline is stale and
        // process_actions resets it next. Firing it would start an election
        // right after hearing from the leader: seen when a turn came later
        // than the timeout (a slow fsync, a paused node) and the batch held
        // the leader's message, and when a node finished its catch-up.
        let due = now >= self.election_deadline && !self.node.actions().set_election_timeout;
        if due && self.storage.catching_up() {
            // A catch-up member starts no election: it waits for a leader.
            assert!(!self.node.role().is_leader(), "a catch-up member never leads");
            self.election_deadline = now + self.opts.election_timeout_min;
        } else if due {
            // noraft: a leader heartbeats, others start an election. Either
            // way it asks for a new timeout, which resets the deadline.
            self.node.handle_election_timeout();
            self.election_deadline = now + self.opts.heartbeat;
        }
        if let Some(at) = self.next_sync
            && now >= at
        {
            if self.storage.has_unsynced()
                && let Err(e) = self.storage.sync()
            {
                fatal(e);
            }
            if let SyncPolicy::Interval(d) = self.opts.sync {
                self.next_sync = Some(now + d);
            }
        }
        if (self.opts.bugs.ack_before_write || self.opts.bugs.ack_before_fsync) && now >= self.next_bug_flush {
            self.next_bug_flush = now + BUG_FLUSH_INTERVAL;
            let result = match self.opts.sync {
                SyncPolicy::Always => self.storage.sync(),
                SyncPolicy::Interval(_) => self.storage.flush_buffer(),
            };
            if let Err(e) = result {
                fatal(e);
            }
        }
        self.check_quorum(now);
    }

    /// A leader that has not heard from a majority for an election timeout
    /// steps down (noraft has no such rule), so clients stop waiting on a
    /// leader cut off by a partition and find the new one.
    fn check_quorum(&mut self, now: Instant) {
        if !self.node.role().is_leader() || self.peers.is_empty() {
            return;
        }
        let window = self.opts.election_timeout_min * 2;
        if now.duration_since(self.leader_since) < window {
            return;
        }
        let heard = self.contact.values().filter(|t| now.duration_since(**t) < window).count();
        let cluster = self.opts.names.len();
        if (heard + 1) * 2 > cluster {
            return;
        }
        self.step_down(format!("heard from {heard} of {} peers within {window:?}, not a majority", cluster - 1));
    }

    /// Gives up leadership by restarting noraft's node as a follower in the
    /// same term (noraft has no step-down of its own); in-flight writes are
    /// answered as indefinite. The next election starts a new term, which
    /// also resets every follower's match index.
    fn step_down(&mut self, why: String) {
        tracing::warn!(node = %self.opts.name, term = self.node.current_term().get(), "stepping down: {why}");
        // Finish this batch's I/O first: restarting noraft's node drops its queued actions.
        self.process_actions();
        self.resolve_pending(true);
        self.committed = self.commit_index();
        self.behind.clear();
        let voted_for = self.node.voted_for();
        self.node = Node::restart(NodeId::new(self.id), self.node.current_term(), voted_for, raft_log(&self.log));
        self.led = false;
    }

    fn process_actions(&mut self) {
        let was_leader = self.led;
        let mut outbox: Vec<(Option<u64>, noraft::Message)> = Vec::new();
        self.persist_queued();
        let wrote = std::mem::take(&mut self.appended);
        let actions = std::mem::take(self.node.actions_mut());
        for action in actions {
            match action {
                Action::SetElectionTimeout => {
                    let timeout = if self.node.role().is_leader() {
                        self.opts.heartbeat
                    } else {
                        let min = self.opts.election_timeout_min.as_millis() as u64;
                        Duration::from_millis(min + self.random_u64() % min.max(1))
                    };
                    self.election_deadline = Instant::now() + timeout;
                }
                Action::SaveCurrentTerm | Action::SaveVotedFor | Action::AppendLogEntries(_) => {
                    unreachable!("persist_queued took the storage actions")
                }
                Action::BroadcastMessage(m) => outbox.push((None, m)),
                Action::SendMessage(to, m) => outbox.push((Some(to.get()), m)),
                Action::InstallSnapshot(to) => {
                    unreachable!("the log is never compacted, so noraft never asks for a snapshot (node {})", to.get())
                }
            }
        }
        self.incoming.clear();
        self.led = self.node.role().is_leader();
        if was_leader && !self.led {
            // Seen from a message of a higher term (a step-down of ours logs its own reason).
            tracing::info!(node = %self.opts.name, term = self.node.current_term().get(), "no longer leader");
        }
        if self.led && !was_leader {
            tracing::info!(node = %self.opts.name, term = self.node.current_term().get(), "became leader");
            self.leader_since = Instant::now();
            self.contact.clear();
            self.behind.clear();
        }
        // The fsync that must precede anything leaving the node. Async
        // streams, interval sync and the bugs skip it (see docs/node.md).
        let always = matches!(self.opts.sync, SyncPolicy::Always);
        let bug_defers = self.opts.bugs.ack_before_write || self.opts.bugs.ack_before_fsync;
        let sync_before = wrote && always && !bug_defers && !self.stream_async();
        if sync_before && let Err(e) = self.storage.sync() {
            fatal(e);
        }
        for (to, m) in outbox {
            self.send(to, m);
        }
        self.resolve_pending(false);
        if wrote && always && !bug_defers && !sync_before {
            self.sync_owed = true;
        }
        self.committed = self.commit_index();
    }

    /// Persists noraft's AppendLogEntries: replace the local suffix after
    /// `prev_position` with `entries`, skipping entries already stored
    /// identically (same index and term) so duplicates cost no I/O.
    fn append(&mut self, entries: &LogEntries) {
        let prev = entries.prev_position().index.get();
        assert!(prev <= self.log.last_index(), "noraft appends after an entry the log holds");
        let mut records = Vec::with_capacity(entries.len());
        let mut keep = prev;
        let mut diverged = false;
        for (p, e) in entries.iter_with_positions() {
            let (term, index) = (p.term.get(), p.index.get());
            if !diverged && self.log.term_at(index) == Some(term) {
                keep = index;
                continue;
            }
            diverged = true;
            let entry = match e {
                LogEntry::Term(t) => Entry::Term(t.get()),
                LogEntry::ClusterConfig(c) => wire::config_to_entry(&c),
                LogEntry::Command => match self.incoming.get(&(term, index)) {
                    Some(entry) => entry.clone(),
                    None => match self.log.entry(index) {
                        Some((t, entry)) if t == term => entry.clone(),
                        _ => unreachable!("command data for entry ({term}, {index}) arrived with it"),
                    },
                },
            };
            records.push(Record { index, term, entry });
        }
        // noraft's log now ends at the last entry given: match it exactly.
        let end = if diverged { keep } else { entries.last_position().index.get() };
        if end < self.log.last_index() {
            tracing::info!(node = %self.opts.name, from = end + 1, to = self.log.last_index(), "removing a log suffix overwritten by the leader");
            if let Err(e) = self.storage.truncate_after(end) {
                fatal(e);
            }
            self.log.truncate_after(end);
        }
        if let Err(e) = self.storage.append(&records) {
            fatal(e);
        }
        for r in &records {
            self.log.push(r);
        }
        debug_assert_eq!(self.log.last_index(), self.node.log().last_position().index.get());
    }

    fn send(&mut self, to: Option<u64>, mut msg: noraft::Message) {
        if let noraft::Message::AppendEntriesCall { entries, .. } = &mut msg {
            entries.truncate(APPEND_ENTRIES_MAX);
        }
        let log = &self.log;
        let wire = wire::to_wire(&msg, |p, e| match e {
            LogEntry::Command => match log.entry(p.index.get()) {
                Some((t, entry)) if t == p.term.get() => entry.clone(),
                _ => unreachable!("a leader ships only entries its log holds ({:?})", p),
            },
            other => match other {
                LogEntry::Term(t) => Entry::Term(t.get()),
                LogEntry::ClusterConfig(c) => wire::config_to_entry(c),
                LogEntry::Command => unreachable!(),
            },
        });
        let targets: Vec<u64> = match to {
            Some(id) => vec![id],
            None => self.peers.keys().copied().collect(),
        };
        for id in targets {
            if let Some(tx) = self.peers.get(&id) {
                // A full queue means the link is slow or down: dropping is
                // safe, Raft resends on the next heartbeat.
                let _ = tx.try_send(wire.clone());
            }
        }
    }

    /// Answers every pending request whose fate is known: committed (ack),
    /// overwritten (definite failure), or, when `stepping_down` or no longer
    /// leader, unknown.
    fn resolve_pending(&mut self, stepping_down: bool) {
        if self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let leader = self.node.role().is_leader() && !stepping_down;
        let hint = self.leader_name();
        let indexes: Vec<u64> = self.pending.keys().copied().collect();
        for index in indexes {
            let status = self.node.get_commit_status(self.pending[&index].pos);
            let p = if status.is_committed() || status.is_rejected() || !leader || now >= self.pending[&index].deadline
            {
                self.pending.remove(&index).expect("present")
            } else {
                continue;
            };
            if status.is_committed() {
                let (first_seq, count) = self.log.seqs_at(index);
                match p.kind {
                    PendingKind::Publish if count == 1 => p.reply.send(ResponseBody::PubAck { seq: first_seq }),
                    PendingKind::Batch if count > 0 => p.reply.send(ResponseBody::BatchAck { first_seq, count }),
                    PendingKind::Publish | PendingKind::Batch => p.reply.error(
                        ErrorCode::NoStream,
                        "the stream did not exist when the publish applied",
                        true,
                        None,
                    ),
                    PendingKind::Stream { created } => {
                        let config = self.log.config_at(index).expect("a committed stream command leaves a config");
                        let info = self.info(config, index);
                        p.reply.send(if created { ResponseBody::Created { info } } else { ResponseBody::Info { info } })
                    }
                }
            } else if status.is_rejected() {
                p.reply.error(
                    ErrorCode::NotLeader,
                    "the entry was overwritten by another leader's log: not written",
                    true,
                    hint.clone(),
                );
            } else if !leader {
                p.reply.error(
                    ErrorCode::NotLeader,
                    format!("{} lost leadership before the write committed: it may or may not be kept", self.opts.name),
                    false,
                    hint.clone(),
                );
            } else {
                p.reply.error(
                    ErrorCode::Timeout,
                    format!(
                        "not committed within {:?} (no quorum?): it may or may not be kept",
                        self.opts.pending_timeout
                    ),
                    false,
                    None,
                );
            }
        }
    }
}
