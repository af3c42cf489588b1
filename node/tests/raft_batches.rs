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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jetsam_core::proto::{ErrorCode, Request, RequestBody, Response, ResponseBody, StreamConfig};
use jetsam_node::command::Command;
use jetsam_node::core::{Core, Event, Options, Reply};
use jetsam_node::storage::{Entry, Meta, Record, Storage};
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

impl Harness {
    fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let (storage, recovered) = Storage::open(dir.path(), false, false).expect("open an empty data dir");
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
            // Long timers: after the first turn nothing happens unless the test sends it.
            heartbeat: Duration::from_secs(60),
            election_timeout_min: Duration::from_secs(120),
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
