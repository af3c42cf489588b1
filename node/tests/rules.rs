//! The NATS ADR write-consistency rules as the node enforces them over its
//! protocol, and the command-line rules (unknown bug names).

mod common;

use std::time::Duration;

use common::{Cluster, runtime, scenario};
use jetsam_core::proto::{BatchMessage, ErrorCode, RequestBody, ResponseBody, StreamConfig};
use jetsam_core::report::Mode;
use jetsam_targets::Target;
use jetsam_targets::node::Client;

const WAIT: Duration = Duration::from_secs(20);
const REQ: Duration = Duration::from_secs(5);

fn cfg(replicas: u32, consistency: Option<Mode>) -> StreamConfig {
    StreamConfig { name: "s".into(), replicas, consistency }
}

async fn leader_client(c: &Cluster) -> Client {
    c.target.wait_ready(&c.specs, WAIT).await.expect("ready");
    let leader = c.target.leader(&c.specs).await.expect("leader");
    Client::connect(c.specs[c.index_of(&leader)].client_addr, REQ).await.expect("connect")
}

fn expect_error(answer: ResponseBody, code: ErrorCode) -> String {
    match answer {
        ResponseBody::Error { error } => {
            assert_eq!(error.code, code, "{}", error.message);
            assert!(error.definite, "a rejected config is definitely not applied");
            error.message
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[test]
fn replicated_stream_rules() {
    let c = Cluster::start(scenario(3, 3, None, "always", None));
    runtime().block_on(async {
        let client = leader_client(&c).await;
        let create = |config| RequestBody::CreateStream { config };
        let message = expect_error(
            client.request(create(cfg(3, Some(Mode::Async))), REQ).await.unwrap(),
            ErrorCode::AsyncRequiresR1,
        );
        assert!(message.contains("replicas = 1"), "{message}");
        expect_error(client.request(create(cfg(1, None)), REQ).await.unwrap(), ErrorCode::InvalidConfig);
        expect_error(client.request(create(cfg(2, None)), REQ).await.unwrap(), ErrorCode::InvalidConfig);

        // Unset consistency means strong, and info leaves it unset.
        match client.request(create(cfg(3, None)), REQ).await.unwrap() {
            ResponseBody::Created { info } => assert_eq!(info.config.consistency, None),
            other => panic!("expected created, got {other:?}"),
        }
        // Creating it again with the same config is idempotent; another config is refused.
        assert!(matches!(client.request(create(cfg(3, None)), REQ).await.unwrap(), ResponseBody::Created { .. }));
        expect_error(client.request(create(cfg(3, Some(Mode::Strong))), REQ).await.unwrap(), ErrorCode::StreamExists);
        let info = client.request(RequestBody::StreamInfo { stream: "s".into() }, REQ).await.unwrap();
        match &info {
            ResponseBody::Info { info } => assert_eq!(info.config.consistency, None),
            other => panic!("expected info, got {other:?}"),
        }
        let json = serde_json::to_string(&info).unwrap();
        assert!(!json.contains("consistency"), "unset consistency is left out of stream info: {json}");

        let update = RequestBody::UpdateStream { config: cfg(3, Some(Mode::Async)) };
        expect_error(client.request(update, REQ).await.unwrap(), ErrorCode::AsyncRequiresR1);

        let batch = RequestBody::PublishBatch {
            stream: "s".into(),
            messages: (0..3).map(|i| BatchMessage { id: format!("b-{i}"), payload: vec![i] }).collect(),
        };
        match client.request(batch, REQ).await.unwrap() {
            ResponseBody::BatchAck { first_seq, count } => assert_eq!((first_seq, count), (1, 3)),
            other => panic!("expected a batch ack, got {other:?}"),
        }
        let publish = RequestBody::Publish { stream: "s".into(), id: "p-1".into(), payload: vec![1] };
        assert_eq!(client.request(publish, REQ).await.unwrap(), ResponseBody::PubAck { seq: 4 });
        // Reads carry payloads unless asked for ids only.
        let read = |ids_only| RequestBody::ReadLocal { stream: "s".into(), from_seq: 2, max: 10, ids_only };
        match client.request(read(false), REQ).await.unwrap() {
            ResponseBody::Messages { messages, more } => {
                assert!(!more);
                let got: Vec<_> = messages.iter().map(|m| (m.seq, m.id.as_str(), m.payload.clone())).collect();
                assert_eq!(got, vec![(2, "b-1", vec![1]), (3, "b-2", vec![2]), (4, "p-1", vec![1])]);
            }
            other => panic!("expected messages, got {other:?}"),
        }
        match client.request(read(true), REQ).await.unwrap() {
            ResponseBody::Messages { messages, .. } => {
                assert_eq!(messages.len(), 3);
                assert!(messages.iter().all(|m| m.payload.is_empty()));
            }
            other => panic!("expected messages, got {other:?}"),
        }
        let page = RequestBody::ReadCluster { stream: "s".into(), from_seq: 1, max: 2, ids_only: true };
        match client.request(page, REQ).await.unwrap() {
            ResponseBody::Messages { messages, more } => {
                assert_eq!(messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
                assert!(more, "a short page says more follow");
            }
            other => panic!("expected messages, got {other:?}"),
        }
        let wrong = RequestBody::Publish { stream: "other".into(), id: "p-2".into(), payload: vec![] };
        expect_error(client.request(wrong, REQ).await.unwrap(), ErrorCode::NoStream);

        // A follower refuses publishes definitely and names the leader.
        let leader = c.target.leader(&c.specs).await.expect("leader");
        let follower = c.specs.iter().find(|s| s.name != leader).expect("a follower");
        let fc = Client::connect(follower.client_addr, REQ).await.unwrap();
        let publish = RequestBody::Publish { stream: "s".into(), id: "p-3".into(), payload: vec![] };
        match fc.request(publish, REQ).await.unwrap() {
            ResponseBody::Error { error } => {
                assert_eq!(error.code, ErrorCode::NotLeader);
                assert!(error.definite);
                assert_eq!(error.leader_hint.as_deref(), Some(leader.as_str()));
            }
            other => panic!("expected not-leader, got {other:?}"),
        }
    });
}

#[test]
fn async_stream_rules_on_one_replica() {
    let c = Cluster::start(scenario(1, 1, Some("async"), "always", None));
    runtime().block_on(async {
        let client = leader_client(&c).await;
        match client.request(RequestBody::CreateStream { config: cfg(1, Some(Mode::Async)) }, REQ).await.unwrap() {
            ResponseBody::Created { info } => assert_eq!(info.config.consistency, Some(Mode::Async)),
            other => panic!("expected created, got {other:?}"),
        }
        let batch = RequestBody::PublishBatch {
            stream: "s".into(),
            messages: vec![BatchMessage { id: "b".into(), payload: vec![] }],
        };
        expect_error(client.request(batch, REQ).await.unwrap(), ErrorCode::BatchOnAsync);
        let scale = RequestBody::UpdateStream { config: cfg(3, None) };
        expect_error(client.request(scale, REQ).await.unwrap(), ErrorCode::AsyncRequiresR1);
        let publish = RequestBody::Publish { stream: "s".into(), id: "a-1".into(), payload: vec![1] };
        assert_eq!(client.request(publish, REQ).await.unwrap(), ResponseBody::PubAck { seq: 1 });
        // Switching the R1 stream to strong is allowed.
        match client.request(RequestBody::UpdateStream { config: cfg(1, None) }, REQ).await.unwrap() {
            ResponseBody::Info { info } => assert_eq!(info.config.consistency, None),
            other => panic!("expected info, got {other:?}"),
        }
    });
}

#[test]
fn unknown_bug_is_a_usage_error_listing_known_bugs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetsam-node"))
        .args(["--name", "n1", "--data-dir", "/nonexistent/never-created"])
        .args(["--client-addr", "127.0.0.1:1", "--peer-addr", "127.0.0.1:1", "--bug", "lose-everything"])
        .output()
        .expect("run jetsam-node");
    assert_eq!(out.status.code(), Some(jetsam_core::exit::BAD_INPUT));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for bug in jetsam_core::proto::KNOWN_BUGS {
        assert!(stderr.contains(bug), "usage error lists {bug}: {stderr}");
    }
    assert!(!std::path::Path::new("/nonexistent/never-created").exists());
}

#[test]
fn bad_sync_value_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetsam-node"))
        .args(["--name", "n1", "--data-dir", "/nonexistent/never-created", "--sync", "sometimes"])
        .args(["--client-addr", "127.0.0.1:1", "--peer-addr", "127.0.0.1:1"])
        .output()
        .expect("run jetsam-node");
    assert_eq!(out.status.code(), Some(jetsam_core::exit::BAD_INPUT));
    assert!(String::from_utf8_lossy(&out.stderr).contains("always"));
}

#[test]
fn repair_with_trust_corrupt_log_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetsam-node"))
        .args(["--name", "n1", "--data-dir", "/nonexistent/never-created", "--repair"])
        .args(["--client-addr", "127.0.0.1:1", "--peer-addr", "127.0.0.1:1", "--bug", "trust-corrupt-log"])
        .output()
        .expect("run jetsam-node");
    assert_eq!(out.status.code(), Some(jetsam_core::exit::BAD_INPUT));
    assert!(String::from_utf8_lossy(&out.stderr).contains("alternatives"));
    assert!(!std::path::Path::new("/nonexistent/never-created").exists());
}
