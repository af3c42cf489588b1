//! Unit tests of the NATS target (no server needed).

use super::*;
use jetstream::context::{PublishError, PublishErrorKind};
use std::net::SocketAddr;

fn api_error(code: usize, err_code: u64, description: &str) -> jetstream::Error {
    let json = format!(r#"{{"code":{code},"err_code":{err_code},"description":"{description}"}}"#);
    serde_json::from_str(&json).unwrap()
}

#[test]
fn ack_errors_map_as_jepsen_does() {
    let fail = |e: PublishError| matches!(ack_error_outcome(&e), PublishOutcome::Fail { .. });
    let info = |e: PublishError| matches!(ack_error_outcome(&e), PublishOutcome::Info { .. });
    assert!(fail(PublishError::new(PublishErrorKind::StreamNotFound)), "no responders is definite");
    let unavailable = api_error(503, 10008, "JetStream system temporarily unavailable");
    assert!(fail(PublishError::with_source(PublishErrorKind::Other, unavailable)));
    assert!(info(PublishError::new(PublishErrorKind::TimedOut)));
    assert!(info(PublishError::new(PublishErrorKind::BrokenPipe)), "a lost connection is unknown");
    let garbled = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
    assert!(info(PublishError::with_source(PublishErrorKind::Other, garbled)), "a garbled ack is unknown");
    match ack_error_outcome(&PublishError::new(PublishErrorKind::TimedOut)) {
        PublishOutcome::Info { error } => assert!(error.contains("timed out"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn send_errors_are_definite_except_a_timeout() {
    assert!(matches!(
        send_error_outcome(&PublishError::new(PublishErrorKind::MaxPayloadExceeded)),
        PublishOutcome::Fail { .. }
    ));
    assert!(matches!(send_error_outcome(&PublishError::new(PublishErrorKind::TimedOut)), PublishOutcome::Info { .. }));
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn spec(peers: &[(&str, u16)]) -> NodeSpec {
    NodeSpec {
        name: "n1".into(),
        data_dir: PathBuf::from("/tmp/run/data/n1"),
        conf_dir: PathBuf::from("/tmp/run/conf"),
        client_addr: addr(4001),
        peer_listen_addr: addr(4002),
        peers: peers.iter().map(|(n, p)| (n.to_string(), addr(*p))).collect(),
        monitor_addr: addr(4003),
        dead_addr: addr(4004),
    }
}

#[test]
fn a_node_whose_stream_directory_is_gone_holds_no_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = spec(&[]);
    node.data_dir = dir.path().join("n1");
    // A data dir with JetStream's account folder but no stream (deleted as an orphan).
    std::fs::create_dir_all(node.data_dir.join("jetstream").join("$G").join("streams")).unwrap();
    assert_eq!(read_node_files(&node).unwrap(), Vec::new());
    // A stream folder with a damaged block is still unreadable, not empty.
    let msgs = node.data_dir.join("jetstream").join("$G").join("streams").join(STREAM_NAME).join("msgs");
    std::fs::create_dir_all(&msgs).unwrap();
    std::fs::write(msgs.join("1.blk"), [0xffu8; 7]).unwrap();
    assert!(read_node_files(&node).is_err(), "a torn block is reported");
}

fn scenario(stream: &str) -> Scenario {
    let text = format!(
        "name = \"t\"\nnodes = 3\nduration = \"1s\"\n[target]\nkind = \"nats\"\nversion = \"2.12.1\"\n[stream]\n{stream}\n"
    );
    Scenario::from_toml_str("t", &text).unwrap()
}

#[test]
fn config_has_routes_through_the_given_peer_addresses_and_a_dead_advertise() {
    let conf = render_config(&scenario("replicas = 3"), &spec(&[("n2", 5002), ("n3", 5003)])).unwrap();
    for line in [
        "server_name: \"n1\"",
        "listen: \"127.0.0.1:4001\"",
        "http: \"127.0.0.1:4003\"",
        "store_dir: \"/tmp/run/data/n1\"",
        "listen: \"127.0.0.1:4002\"",
        "no_advertise: true",
        "advertise: \"127.0.0.1:4004\"",
        "\"nats-route://127.0.0.1:5002\"",
        "\"nats-route://127.0.0.1:5003\"",
    ] {
        assert!(conf.lines().any(|l| l.trim() == line), "missing {line:?} in\n{conf}");
    }
    assert!(!conf.contains("sync_interval"), "unset sync keeps the server default:\n{conf}");
}

#[test]
fn config_sync_values_and_single_node() {
    let conf = render_config(&scenario("replicas = 3\nsync = \"always\""), &spec(&[("n2", 5002)])).unwrap();
    assert!(conf.contains("sync_interval: \"always\""), "{conf}");
    let conf = render_config(&scenario("replicas = 3\nsync = \"1500ms\""), &spec(&[("n2", 5002)])).unwrap();
    assert!(conf.contains("sync_interval: \"1500000us\""), "{conf}");
    let conf = render_config(&scenario("replicas = 1"), &spec(&[])).unwrap();
    assert!(!conf.contains("cluster"), "one node needs no cluster block:\n{conf}");
    let mut bad = spec(&[]);
    bad.data_dir = PathBuf::from("/tmp/a\"b");
    assert!(render_config(&scenario("replicas = 1"), &bad).is_err());
}

#[test]
fn sync_setting_parses_the_scenario_forms() {
    assert_eq!(sync_setting(None), Ok(SyncSetting::ServerDefault));
    assert_eq!(sync_setting(Some("always")), Ok(SyncSetting::Always));
    assert_eq!(sync_setting(Some("2m")), Ok(SyncSetting::Interval(Duration::from_secs(120))));
    assert!(sync_setting(Some("0s")).is_err());
    assert!(sync_setting(Some("never")).is_err());
}

#[test]
fn server_version_reads_the_version_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("jetsam-nats-version-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let good = server_version(&script("good", "echo 'nats-server: v2.12.1'"));
    let odd = server_version(&script("odd", "echo 'something else'"));
    let missing = server_version(&dir.join("absent"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(good, Ok("2.12.1".to_string()));
    assert!(odd.unwrap_err().contains("unexpected --version output"));
    assert!(missing.unwrap_err().contains("cannot run"));
    assert!(is_version("2.15.1") && !is_version("2.15") && !is_version("v2.15.1") && !is_version("2.x.1"));
}

/// One node's `/jsz?accounts=true&streams=true` answer, shaped as 2.12.1 writes it.
fn jsz_answer(meta_leader: Option<&str>, leader: Option<&str>, replicas: &[(&str, bool)], last_seq: u64) -> Value {
    serde_json::json!({
        "meta_cluster": {"name": "jetsam", "leader": meta_leader},
        "account_details": [{"name": "$G", "stream_detail": [{
            "name": STREAM_NAME,
            "cluster": {
                "leader": leader,
                "replicas": replicas.iter().map(|(n, c)| serde_json::json!({"name": n, "current": c})).collect::<Vec<_>>(),
            },
            "state": {"messages": last_seq, "first_seq": 1, "last_seq": last_seq},
        }]}],
    })
}

fn answers(list: &[(&str, Value)]) -> BTreeMap<String, Value> {
    list.iter().map(|(n, v)| (n.to_string(), v.clone())).collect()
}

#[test]
fn stream_leader_comes_from_jsz_stream_detail() {
    let jsz = jsz_answer(Some("n1"), Some("n3"), &[("n1", true), ("n2", false)], 5);
    assert_eq!(stream_leader(&jsz, 2), Some(("n3".to_string(), false)));
    let jsz = jsz_answer(Some("n1"), Some("n3"), &[("n1", true), ("n2", true)], 5);
    assert_eq!(stream_leader(&jsz, 2), Some(("n3".to_string(), true)));
    assert_eq!(stream_leader(&jsz, 3), Some(("n3".to_string(), false)), "a replica missing from the list");
    assert_eq!(stream_detail(&jsz).unwrap()["state"]["last_seq"], 5);
    let none: Value = serde_json::from_str(r#"{"account_details":[]}"#).unwrap();
    assert_eq!(stream_leader(&none, 2), None);
    let empty = jsz_answer(Some("n1"), Some(""), &[], 5);
    assert_eq!(stream_leader(&empty, 2), None, "an empty leader is none");
}

#[test]
fn a_node_without_a_meta_leader_names_no_stream_leader() {
    // Measured on 2.12.1 after a coordinated power loss: until the meta
    // group elects, every restarted node reports itself stream leader,
    // with no replicas listed and equal counts.
    let stale = answers(&[
        ("n1", jsz_answer(None, Some("n1"), &[], 3014)),
        ("n2", jsz_answer(None, Some("n2"), &[], 3014)),
        ("n3", jsz_answer(None, Some("n3"), &[], 3014)),
    ]);
    assert_eq!(leader_from(&stale, 3, 3), None);
    // Then a meta leader, no stream leader yet.
    let electing = answers(&[
        ("n1", jsz_answer(Some("n2"), None, &[("n2", false), ("n3", false)], 3014)),
        ("n2", jsz_answer(Some("n2"), None, &[("n1", false), ("n3", false)], 3016)),
    ]);
    assert_eq!(leader_from(&electing, 3, 3), None);
    assert_eq!(counts_from(&electing).get("n2"), Some(&(3016, 1, 3016)));
}

#[test]
fn the_leader_answers_for_itself_and_others_only_name_it() {
    let healthy = answers(&[
        ("n1", jsz_answer(Some("n2"), Some("n2"), &[("n2", true), ("n3", false)], 7)),
        ("n2", jsz_answer(Some("n2"), Some("n2"), &[("n1", true), ("n3", true)], 7)),
        ("n3", jsz_answer(Some("n2"), Some("n2"), &[("n1", false), ("n2", true)], 7)),
    ]);
    assert_eq!(leader_from(&healthy, 3, 3), Some(("n2".to_string(), true)));
    // The leader does not answer (paused): the others still name it, not current.
    let mut paused = healthy.clone();
    paused.remove("n2");
    assert_eq!(leader_from(&paused, 3, 3), Some(("n2".to_string(), false)));
    // R3 on 5 servers: the leader lists its 2 peers; the 2 other servers list no stream.
    let r3 = answers(&[
        ("n1", jsz_answer(Some("n1"), Some("n4"), &[("n4", true), ("n5", false)], 7)),
        ("n4", jsz_answer(Some("n1"), Some("n4"), &[("n1", true), ("n5", true)], 7)),
    ]);
    assert_eq!(leader_from(&r3, 5, 3), Some(("n4".to_string(), true)));
    assert_eq!(leader_from(&r3, 5, 5), Some(("n4".to_string(), false)), "R5 would need 4 peers current");
    // One node, no Raft group: it leads if it holds the stream.
    let single = answers(&[("n1", jsz_answer(None, None, &[], 3))]);
    assert_eq!(leader_from(&single, 1, 1), Some(("n1".to_string(), true)));
    assert_eq!(leader_from(&BTreeMap::new(), 1, 1), None);
}

#[test]
fn the_id_leads_the_payload_and_reads_back_from_it() {
    let body = message_body("12-345", b"abcdefghijklmnop".to_vec());
    assert_eq!(body, b"12-345 hijklmnop", "the id replaces the payload's head; the size stays");
    assert_eq!(message_id(None, &body), Some("12-345"));
    let short = message_body("0-7", b"ab".to_vec());
    assert_eq!(short, b"0-7 ", "a short payload becomes the id and the separator");
    assert_eq!(message_id(None, &short), Some("0-7"));
    assert_eq!(message_body("4294967295-18446744073709551615", Vec::new()).len(), ID_BYTES_MAX + 1);
    let longest = message_body("4294967295-18446744073709551615", vec![b'x'; 64]);
    assert_eq!(message_id(None, &longest), Some("4294967295-18446744073709551615"));
    // Old records carry the id in a header; it wins over the payload.
    let headers = b"NATS/1.0\r\nJetsam-Id: 3-9\r\n\r\n";
    assert_eq!(message_id(Some(headers), b"xxxxxxxx"), Some("3-9"));
    assert_eq!(message_id(Some(b"NATS/1.0\r\nOther: 1\r\n\r\n"), b"5-6 rest"), Some("5-6"));
    for not_an_id in [&b""[..], b"no separator", b"-1 x", b"1- x", b"a-1 x", b"1-1x", b"12", b" 1-1"] {
        assert_eq!(message_id(None, not_an_id), None, "{:?}", String::from_utf8_lossy(not_an_id));
    }
    // A separator beyond the longest id is not an id's end.
    let mut far = vec![b'1'; ID_BYTES_MAX + 2];
    far[3] = b'-';
    far.push(ID_SEPARATOR);
    assert_eq!(message_id(None, &far), None);
    assert_eq!(id_or_marker(None, 17), "?no-jetsam-id@17");
}

fn counts(list: &[(&str, u64)]) -> ReplicaCounts {
    list.iter().map(|(n, c)| (n.to_string(), (*c, 1, *c))).collect()
}

#[test]
fn convergence_is_equal_counts_under_a_leader_that_sees_them_current() {
    let t0 = Instant::now();
    let mut watch = ConvergeWatch::new(3, t0);
    let equal = counts(&[("n1", 5), ("n2", 5), ("n3", 5)]);
    // Equal counts with no leader, or with one that lacks a current replica, are not enough.
    assert_eq!(watch.observe(t0, equal.clone(), None), Converge::Wait);
    assert_eq!(watch.observe(t0, equal.clone(), Some(("n1".into(), false))), Converge::Wait);
    let two = counts(&[("n1", 5), ("n2", 5)]);
    assert_eq!(watch.observe(t0, two, Some(("n1".into(), true))), Converge::Wait, "a replica did not answer");
    assert_eq!(watch.observe(t0, equal, Some(("n1".into(), true))), Converge::Done);
}

#[test]
fn no_leader_for_20_s_with_still_counts_gives_up() {
    let t0 = Instant::now();
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    let still = counts(&[("n1", 3014), ("n2", 3014), ("n3", 3014)]);
    let mut watch = ConvergeWatch::new(3, t0);
    for s in [0.0, 10.0, 19.9] {
        assert_eq!(watch.observe(at(s), still.clone(), None), Converge::Wait, "at {s} s");
    }
    assert_eq!(watch.observe(at(20.0), still.clone(), None), Converge::NotElecting);
    assert_eq!(watch.no_leader_for(at(20.0)), Duration::from_secs(20));

    // Counts that moved 5 s ago, or a leader seen 20 s ago, keep the wait going.
    let mut watch = ConvergeWatch::new(3, t0);
    assert_eq!(watch.observe(at(0.0), still.clone(), None), Converge::Wait);
    let moved = counts(&[("n1", 3014), ("n2", 3016), ("n3", 3016)]);
    assert_eq!(watch.observe(at(18.0), moved.clone(), None), Converge::Wait);
    assert_eq!(watch.observe(at(22.9), moved.clone(), None), Converge::Wait, "moved 4.9 s ago");
    assert_eq!(watch.observe(at(23.0), moved.clone(), None), Converge::NotElecting);

    let mut watch = ConvergeWatch::new(3, t0);
    assert_eq!(watch.observe(at(5.0), moved.clone(), Some(("n2".into(), false))), Converge::Wait);
    assert_eq!(watch.observe(at(24.9), moved.clone(), None), Converge::Wait, "a leader 19.9 s ago");
    assert_eq!(watch.observe(at(25.0), moved, None), Converge::NotElecting);
}

#[test]
fn a_leader_that_sees_unequal_replicas_current_for_10_s_gives_up() {
    let t0 = Instant::now();
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    // Measured after #7564: the leader ahead of both followers, all "current".
    let unequal = counts(&[("n1", 2992), ("n2", 2992), ("n3", 3014)]);
    let leader = || Some(("n3".to_string(), true));
    let mut watch = ConvergeWatch::new(3, t0);
    // The counts have stood still since the start, but the leader is new at 8 s.
    assert_eq!(watch.observe(at(0.0), unequal.clone(), None), Converge::Wait);
    assert_eq!(watch.observe(at(8.0), unequal.clone(), leader()), Converge::Wait);
    assert_eq!(watch.observe(at(17.9), unequal.clone(), leader()), Converge::Wait);
    assert_eq!(watch.observe(at(18.0), unequal.clone(), leader()), Converge::NothingToRepair);

    // A leader that does not see its replicas current may still repair them: wait on.
    let mut watch = ConvergeWatch::new(3, t0);
    for s in [0.0, 15.0, 29.0] {
        assert_eq!(watch.observe(at(s), unequal.clone(), Some(("n3".into(), false))), Converge::Wait);
    }
    // A break in "current" starts the 10 s again.
    let mut watch = ConvergeWatch::new(3, t0);
    assert_eq!(watch.observe(at(0.0), unequal.clone(), leader()), Converge::Wait);
    assert_eq!(watch.observe(at(6.0), unequal.clone(), Some(("n3".into(), false))), Converge::Wait);
    assert_eq!(watch.observe(at(12.0), unequal.clone(), leader()), Converge::Wait);
    assert_eq!(watch.observe(at(21.9), unequal.clone(), leader()), Converge::Wait);
    assert_eq!(watch.observe(at(22.0), unequal, leader()), Converge::NothingToRepair);
}

#[test]
fn behind_is_the_leaders_last_seq_minus_the_nodes() {
    let counts: ReplicaCounts =
        [("n1".to_string(), (900, 1, 900)), ("n2".to_string(), (400, 1, 400))].into_iter().collect();
    assert_eq!(behind_from(&counts, "n1", "n2"), Some(500));
    assert_eq!(behind_from(&counts, "n1", "n1"), Some(0));
    assert_eq!(behind_from(&counts, "n2", "n1"), Some(0), "ahead of the leader is not behind");
    assert_eq!(behind_from(&counts, "n1", "n3"), None, "no replica, no answer");
}
