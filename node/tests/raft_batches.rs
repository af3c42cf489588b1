//! The event loop ([`Core::turn`]) driven in-process, one batch at a time,
//! with the two other nodes of a 3-node cluster played by the test: it
//! decides which client requests and peer messages share a batch, which a
//! multi-process test can only hope for.
//!
//! Regression: a leader paused (SIGSTOP) while it still had publishes
//! queued resumes, proposes them (noraft queues one log append) and, in the
//! same batch, receives the new leader's AppendEntries, whose append starts
//! below the queued one. noraft merged the two appends and hit its
//! `debug_assert!(self.contains(entries.prev_position))` (log.rs:616); a
//! release build garbled the merged append instead.
//!
//! Also the `--repair` catch-up member: a node whose damaged log was wiped
//! grants no vote and starts no election until an AppendEntries call of its
//! term's leader leaves it holding that leader's log through an entry of the
//! leader's term and through the leader's commit index; the state survives
//! a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jetsam_core::proto::{ErrorCode, NodeStatus, Request, RequestBody, Response, ResponseBody, Role, StreamConfig};
use jetsam_node::command::Command;
use jetsam_node::core::{Core, Event, Options, Reply};
use jetsam_node::storage::{self, CATCH_UP_FILE, Entry, Meta, Record, Storage};
use jetsam_node::wire::WireMessage;
use jetsam_node::{Bugs, SyncPolicy};
use tokio::sync::{Semaphore, mpsc};

const STREAM: &str = "s";

/// n1 as a real [`Core`] on a temp data dir; n2 and n3 are the test.
struct Harness {
    dir: tempfile::TempDir,
    core: Core,
    /// What n1 sent to n2 and n3.
    to_peers: BTreeMap<u64, mpsc::Receiver<WireMessage>>,
    /// Answers to this test's client requests.
    answers_tx: mpsc::UnboundedSender<Response>,
    answers: mpsc::UnboundedReceiver<Response>,
    permits: Arc<Semaphore>,
    next_req_id: u64,
}

/// Long timers: after the first turn nothing happens unless the test sends it.
const SLOW: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(120));
/// Short timers (heartbeat, shortest election timeout), for tests that let elections come due.
const FAST: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(40));

impl Harness {
    fn start() -> Harness {
        Harness::open(tempfile::tempdir().expect("temp dir"), SLOW)
    }

    /// n1 on `dir` as it is (a restart when the dir was used before).
    fn open(dir: tempfile::TempDir, (heartbeat, election_timeout_min): (Duration, Duration)) -> Harness {
        let (storage, recovered) = Storage::open(dir.path(), false, false).expect("open n1's data dir");
        let mut peers = BTreeMap::new();
        let mut to_peers = BTreeMap::new();
        for id in [2, 3] {
            let (tx, rx) = mpsc::channel(1024);
            peers.insert(id, tx);
            to_peers.insert(id, rx);
        }
        let opts = Options {
            name: "n1".into(),
            names: vec!["n1".into(), "n2".into(), "n3".into()],
            sync: SyncPolicy::Always,
            bugs: Bugs::default(),
            heartbeat,
            election_timeout_min,
            pending_timeout: Duration::from_secs(60),
        };
        let core = Core::new(opts, storage, recovered.meta, recovered.records, peers).expect("core starts");
        let (answers_tx, answers) = mpsc::unbounded_channel();
        Harness { dir, core, to_peers, answers_tx, answers, permits: Arc::new(Semaphore::new(64)), next_req_id: 1 }
    }

    fn client(&mut self, body: RequestBody) -> Event {
        let req_id = self.next_req_id;
        self.next_req_id += 1;
        let permit = self.permits.clone().try_acquire_owned().expect("permits left");
        Event::Client { req: Request { req_id, body }, reply: Reply { tx: self.answers_tx.clone(), req_id, permit } }
    }

    fn publish(&mut self, id: &str) -> Event {
        self.client(RequestBody::Publish { stream: STREAM.into(), id: id.into(), payload: vec![7; 16] })
    }

    /// Stops n1 (drops its event loop) and hands back its data dir.
    fn into_dir(self) -> tempfile::TempDir {
        self.dir
    }

    /// Turns the loop with no events for `span`, as an idle event loop does,
    /// so that its election timer comes due several times.
    fn idle(&mut self, span: Duration) {
        let end = std::time::Instant::now() + span;
        while std::time::Instant::now() < end {
            self.core.turn([]);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn status(&mut self) -> NodeStatus {
        let ask = self.client(RequestBody::Status);
        self.core.turn([ask]);
        match self.answers().into_values().next() {
            Some(ResponseBody::Status { status }) => status,
            other => panic!("status answers a status: {other:?}"),
        }
    }

    fn sent_to(&mut self, peer: u64) -> Vec<WireMessage> {
        let rx = self.to_peers.get_mut(&peer).expect("a peer");
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn answers(&mut self) -> BTreeMap<u64, ResponseBody> {
        std::iter::from_fn(|| self.answers.try_recv().ok()).map(|r| (r.req_id, r.body)).collect()
    }

    /// What n1 has on disk (every record is fsynced at the end of a turn with `always`).
    fn stored(&self) -> (Meta, Vec<Record>) {
        let (_, recovered) = Storage::open(self.dir.path(), false, false).expect("reopen n1's data dir");
        (recovered.meta, recovered.records)
    }

    /// Makes n1 leader of term 1 with log `1: config, 2: Term(1), 3: create`,
    /// index 3 not yet replicated.
    fn leader_with_uncommitted_create() -> Harness {
        let mut h = Harness::start();
        h.core.expire_election_timer();
        h.core.turn([]);
        let vote_calls = h.sent_to(2);
        assert!(
            matches!(vote_calls.as_slice(), [WireMessage::VoteCall { from: 1, term: 1, last: (0, 1) }]),
            "n1 campaigns in term 1 after its first election timeout: {vote_calls:?}"
        );
        h.core.turn([Event::Peer(WireMessage::VoteReply { from: 2, term: 1, granted: true })]);
        let config = StreamConfig { name: STREAM.into(), replicas: 3, consistency: None };
        let create = h.client(RequestBody::CreateStream { config });
        h.core.turn([create]);
        let (meta, records) = h.stored();
        assert_eq!(meta, Meta { term: 1, voted_for: Some(1) });
        let terms: Vec<(u64, u64)> = records.iter().map(|r| (r.index, r.term)).collect();
        assert_eq!(terms, vec![(1, 0), (2, 1), (3, 1)], "n1 leads term 1 and wrote the create at index 3");
        assert!(h.answers().is_empty(), "nothing is committed without a follower's answer");
        h.sent_to(2);
        h.sent_to(3);
        h
    }
}

fn is_not_leader(body: &ResponseBody) -> bool {
    matches!(body, ResponseBody::Error { error } if error.code == ErrorCode::NotLeader)
}

/// n2 was elected in term 2 holding n1's log up to index 2: its first
/// broadcast ships its Term(2) entry after (1, 2), below n1's queued append.
#[test]
fn a_resumed_leader_proposes_then_follows_the_new_leader_in_one_batch() {
    let mut h = Harness::leader_with_uncommitted_create();
    let publish = h.publish("m1");
    let new_leader =
        WireMessage::AppendCall { from: 2, term: 2, commit: 2, prev: (1, 2), entries: vec![Entry::Term(2)] };
    h.core.turn([publish, Event::Peer(new_leader)]);

    let (meta, records) = h.stored();
    assert_eq!(meta, Meta { term: 2, voted_for: Some(2) }, "n1 follows n2 in term 2, durably");
    let stored: Vec<(u64, u64, &Entry)> = records.iter().map(|r| (r.index, r.term, &r.entry)).collect();
    assert_eq!(stored[1..], [(2, 1, &Entry::Term(1)), (3, 2, &Entry::Term(2))], "n1's log is n2's: {stored:?}");
    let replies = h.sent_to(2);
    assert!(
        replies.contains(&WireMessage::AppendReply { from: 1, term: 2, last: (2, 3) }),
        "n1 tells n2 its log now ends at n2's entry: {replies:?}"
    );
    let answers = h.answers();
    assert_eq!(answers.len(), 2, "the create and the publish are both answered: {answers:?}");
    assert!(answers.values().all(is_not_leader), "neither is acked by a deposed leader: {answers:?}");

    // And replication goes on from there.
    let next = WireMessage::AppendCall {
        from: 2,
        term: 2,
        commit: 4,
        prev: (2, 3),
        entries: vec![Entry::Cmd(Command::Publish { id: "x".into(), payload: vec![1] })],
    };
    h.core.turn([Event::Peer(next)]);
    let (_, records) = h.stored();
    assert_eq!(records.len(), 4);
    assert_eq!(records[3].term, 2);
    assert!(h.sent_to(2).contains(&WireMessage::AppendReply { from: 1, term: 2, last: (2, 4) }));
}

/// The new leader's heartbeat first makes n1 cut its log below the
/// publish it just proposed (a divergence, which noraft handles without
/// asking for I/O), then its catch-up append starts below that publish.
#[test]
fn a_resumed_leader_truncates_then_appends_in_one_batch() {
    let mut h = Harness::leader_with_uncommitted_create();
    let publish = h.publish("m1");
    let heartbeat = WireMessage::AppendCall { from: 2, term: 2, commit: 2, prev: (2, 4), entries: vec![] };
    let catch_up = WireMessage::AppendCall {
        from: 2,
        term: 2,
        commit: 2,
        prev: (1, 2),
        entries: vec![Entry::Term(2), Entry::Cmd(Command::Publish { id: "x".into(), payload: vec![1] })],
    };
    h.core.turn([publish, Event::Peer(heartbeat), Event::Peer(catch_up)]);

    let (meta, records) = h.stored();
    assert_eq!(meta, Meta { term: 2, voted_for: Some(2) });
    let terms: Vec<(u64, u64)> = records.iter().map(|r| (r.index, r.term)).collect();
    assert_eq!(terms, vec![(1, 0), (2, 1), (3, 2), (4, 2)], "n1's log is n2's");
    let Entry::Cmd(Command::Publish { id, .. }) = &records[3].entry else {
        panic!("index 4 holds n2's publish: {:?}", records[3]);
    };
    assert_eq!(id, "x", "n1's own proposal at index 4 was overwritten");
    let replies = h.sent_to(2);
    assert!(
        replies.contains(&WireMessage::AppendReply { from: 1, term: 2, last: (2, 4) }),
        "n1 tells n2 its log ends at n2's last entry: {replies:?}"
    );
    let answers = h.answers();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers.values().all(is_not_leader), "{answers:?}");
}

/// A follower whose turn comes after its election timeout has passed (a
/// slow fsync, a paused process) but whose batch holds the leader's append
/// keeps following: the append resets the timer before it can fire. Before
/// the fix the stale deadline fired in the same turn and n1 campaigned.
#[test]
fn an_overdue_turn_that_brings_the_leaders_append_starts_no_election() {
    let mut h = Harness::open(tempfile::tempdir().expect("temp dir"), FAST);
    let heartbeat = |commit| WireMessage::AppendCall { from: 2, term: 1, commit, prev: (0, 1), entries: vec![] };
    h.core.turn([Event::Peer(heartbeat(1))]);
    assert_eq!(h.status().role, Role::Follower);
    let _ = (h.sent_to(2), h.sent_to(3));
    for _ in 0..5 {
        // Past the longest election timeout (2 x 40 ms) with no turn at all.
        std::thread::sleep(Duration::from_millis(100));
        h.core.turn([Event::Peer(heartbeat(1))]);
        let (to2, to3) = (h.sent_to(2), h.sent_to(3));
        assert!(vote_calls(&to2).is_empty() && vote_calls(&to3).is_empty(), "n1 campaigned: {to2:?} {to3:?}");
        assert!(to2.contains(&WireMessage::AppendReply { from: 1, term: 1, last: (0, 1) }), "{to2:?}");
        let status = h.status();
        assert_eq!((status.role, status.term), (Role::Follower, 1), "{status:?}");
    }
}

/// n1's data dir as `--repair` leaves it: n1 had a log of term 1 and was in
/// term 2 having voted for n2; its log was found damaged and wiped.
fn repaired_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut s, _) = Storage::open(dir.path(), false, false).expect("open");
    let config = Entry::Config { voters: vec![1, 2, 3], new_voters: vec![], non_voters: vec![] };
    s.append(&[
        Record { index: 1, term: 0, entry: config },
        Record { index: 2, term: 1, entry: Entry::Term(1) },
        Record { index: 3, term: 1, entry: create() },
    ])
    .expect("append");
    s.sync().expect("sync");
    s.save_meta(Meta { term: 2, voted_for: Some(2) }).expect("meta");
    drop(s);
    let repaired = storage::repair(dir.path(), "test damage").expect("repair");
    assert_eq!(repaired.new, Meta { term: 3, voted_for: None }, "the repair moves the term on by one, no vote");
    dir
}

fn create() -> Entry {
    Entry::Cmd(Command::CreateStream { config: StreamConfig { name: STREAM.into(), replicas: 3, consistency: None } })
}

/// n2 leads term 4 with the log `1: config, 2: Term(1), 3: create, 4:
/// Term(4), 5: publish`. Its first call to n1 ships entries 2 and 3 with a
/// commit index of 3 (entries of earlier terms; a new leader's commit index
/// can lag what it holds).
fn leader_call_old_entries() -> WireMessage {
    WireMessage::AppendCall { from: 2, term: 4, commit: 3, prev: (0, 1), entries: vec![Entry::Term(1), create()] }
}

/// n2's next calls: its Term(4) entry (commit 5 is past it), then the publish.
fn leader_calls_rest() -> [WireMessage; 2] {
    [
        WireMessage::AppendCall { from: 2, term: 4, commit: 5, prev: (1, 3), entries: vec![Entry::Term(4)] },
        WireMessage::AppendCall {
            from: 2,
            term: 4,
            commit: 5,
            prev: (4, 4),
            entries: vec![Entry::Cmd(Command::Publish { id: "x".into(), payload: vec![1] })],
        },
    ]
}

fn vote_calls(msgs: &[WireMessage]) -> Vec<&WireMessage> {
    msgs.iter().filter(|m| matches!(m, WireMessage::VoteCall { .. })).collect()
}

fn vote_replies(msgs: &[WireMessage]) -> Vec<&WireMessage> {
    msgs.iter().filter(|m| matches!(m, WireMessage::VoteReply { .. })).collect()
}

/// Asserts n1 is still a catch-up member: no election for several timeouts,
/// no vote for a candidate with a better log in a higher term, status
/// `learner`, the marker on disk.
fn assert_catching_up(h: &mut Harness, candidate_term: u64) {
    let term_before = h.stored().0.term;
    h.idle(Duration::from_millis(300));
    let sent: Vec<WireMessage> = [2, 3].into_iter().flat_map(|p| h.sent_to(p)).collect();
    assert!(vote_calls(&sent).is_empty(), "a catch-up member starts no election: {sent:?}");
    let ask = WireMessage::VoteCall { from: 3, term: candidate_term, last: (9, 99) };
    h.core.turn([Event::Peer(ask)]);
    let replies = h.sent_to(3);
    assert!(vote_replies(&replies).is_empty(), "a catch-up member grants no vote: {replies:?}");
    assert_eq!(h.stored().0.term, term_before, "nor takes the candidate's term");
    let status = h.status();
    assert_eq!(status.role, Role::Learner, "{status:?}");
    assert!(status.detail.as_deref().is_some_and(|d| d.contains("catching up")), "{status:?}");
    assert!(h.dir.path().join(CATCH_UP_FILE).exists());
}

/// Asserts n1 campaigns and votes again.
fn assert_voting(h: &mut Harness) {
    assert!(!h.dir.path().join(CATCH_UP_FILE).exists(), "the catch-up marker is gone");
    // No leader heartbeats: n1's election timer comes due and it campaigns.
    h.idle(Duration::from_millis(300));
    let sent = h.sent_to(2);
    assert!(
        vote_calls(&sent).iter().any(|m| matches!(m, WireMessage::VoteCall { from: 1, .. })),
        "n1 starts elections again: {sent:?}"
    );
    let candidate_term = h.stored().0.term + 10;
    let ask = WireMessage::VoteCall { from: 3, term: candidate_term, last: (9, 99) };
    h.core.turn([Event::Peer(ask)]);
    let replies = h.sent_to(3);
    assert!(
        replies.contains(&WireMessage::VoteReply { from: 1, term: candidate_term, granted: true }),
        "n1 votes for a candidate with a better log: {replies:?}"
    );
}

#[test]
fn a_catching_up_node_neither_votes_nor_campaigns_until_it_holds_the_leaders_log() {
    let mut h = Harness::open(repaired_dir(), FAST);
    assert_eq!(h.stored(), (Meta { term: 3, voted_for: None }, h.stored().1));
    assert_catching_up(&mut h, 5);

    // n1 now holds n2's log up to n2's commit index 3, but none of term 4:
    // entries committed in earlier terms may lie beyond (up to n2's Term(4)).
    h.core.turn([Event::Peer(leader_call_old_entries())]);
    assert!(h.sent_to(2).contains(&WireMessage::AppendReply { from: 1, term: 4, last: (1, 3) }));
    assert_catching_up(&mut h, 6);

    // Holding n2's Term(4) entry but not its commit index 5: still catching up.
    let [term_entry, publish] = leader_calls_rest();
    h.core.turn([Event::Peer(term_entry)]);
    assert!(h.sent_to(2).contains(&WireMessage::AppendReply { from: 1, term: 4, last: (4, 4) }));
    assert_catching_up(&mut h, 7);

    h.core.turn([Event::Peer(publish)]);
    assert!(h.sent_to(2).contains(&WireMessage::AppendReply { from: 1, term: 4, last: (4, 5) }));
    assert_eq!(h.status().role, Role::Follower);
    assert_eq!(h.stored().1.len(), 5, "n1 holds n2's whole log");
    assert_voting(&mut h);
}

#[test]
fn the_catch_up_survives_a_restart() {
    let mut h = Harness::open(repaired_dir(), FAST);
    h.core.turn([Event::Peer(leader_call_old_entries())]);
    let dir = h.into_dir();

    // Restarted mid-catch-up (as after a crash): still not voting.
    let mut h = Harness::open(dir, FAST);
    let (meta, records) = h.stored();
    assert_eq!((meta, records.len()), (Meta { term: 4, voted_for: Some(2) }, 3), "n1 kept what it caught up");
    assert_catching_up(&mut h, 9);
    h.core.turn(leader_calls_rest().map(Event::Peer));
    assert_eq!(h.status().role, Role::Follower);
    let dir = h.into_dir();

    // Restarted after the catch-up: a voting member.
    let mut h = Harness::open(dir, FAST);
    assert_eq!(h.stored().1.len(), 5);
    assert_voting(&mut h);
}
