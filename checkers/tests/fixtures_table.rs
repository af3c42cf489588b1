//! Hand-written run folders (tests/fixtures/<case>/, described in
//! tests/fixtures/README.md) with answers worked out by hand: every anomaly
//! class, the verdict rules per mode, unreadable nodes and the window tie.

use jetsam_checkers::{Overrides, check, load_run};
use jetsam_core::event::EventKind;
use jetsam_core::report::{LostClasses, Report, Verdict};
use std::path::Path;

fn run(case: &str) -> Report {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(case);
    let (input, config) = load_run(&dir, &Overrides::default()).unwrap_or_else(|e| panic!("{case}: {e}"));
    check(&input, &config)
}

/// The counts every case asserts, in one row.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    verdict: Verdict,
    acked: u64,
    lost: u64,
    unexpected: u64,
    resurrected: u64,
    duplicated: u64,
    seq_mismatch: u64,
    recovered_indeterminate: u64,
    divergent_pairs: usize,
    windows: usize,
    lost_cluster_view: Option<u64>,
    /// (node, lost, unreadable)
    nodes: Vec<(&'static str, u64, bool)>,
}

fn row(r: &Report) -> Row {
    Row {
        verdict: r.verdict,
        acked: r.acked,
        lost: r.lost,
        unexpected: r.unexpected.count,
        resurrected: r.resurrected.count,
        duplicated: r.duplicated.count,
        seq_mismatch: r.seq_mismatch.count,
        recovered_indeterminate: r.recovered_indeterminate,
        divergent_pairs: r.divergence.len(),
        windows: r.loss_windows.len(),
        lost_cluster_view: r.lost_cluster_view,
        nodes: r.nodes.iter().map(|(n, nr)| (&*String::leak(n.clone()), nr.lost, nr.unreadable)).collect(),
    }
}

const P: Verdict = Verdict::Pass;
const F: Verdict = Verdict::Fail;
const U: Verdict = Verdict::Unknown;

#[allow(clippy::too_many_arguments)]
fn expect(
    verdict: Verdict,
    lost: u64,
    anomalies: [u64; 4],
    recovered_indeterminate: u64,
    divergent_pairs: usize,
    windows: usize,
    lost_cluster_view: Option<u64>,
    nodes: &[(&'static str, u64, bool)],
) -> Row {
    Row {
        verdict,
        acked: 6,
        lost,
        unexpected: anomalies[0],
        resurrected: anomalies[1],
        duplicated: anomalies[2],
        seq_mismatch: anomalies[3],
        recovered_indeterminate,
        divergent_pairs,
        windows,
        lost_cluster_view,
        nodes: nodes.to_vec(),
    }
}

const OK3: &[(&str, u64, bool)] = &[("n1", 0, false), ("n2", 0, false), ("n3", 0, false)];

#[test]
fn every_case_gives_its_known_answer() {
    let none = [0; 4];
    let cases: Vec<(&str, Row)> = vec![
        ("pass-strong", expect(P, 0, none, 0, 0, 0, None, OK3)),
        ("lost-strong", expect(F, 2, none, 0, 0, 1, None, &[("n1", 2, false), ("n2", 2, false), ("n3", 2, false)])),
        ("lost-one-node", expect(F, 0, none, 0, 2, 0, None, &[("n1", 0, false), ("n2", 2, false), ("n3", 0, false)])),
        ("unexpected", expect(F, 0, [2, 0, 0, 0], 0, 0, 0, None, OK3)),
        ("resurrected", expect(F, 0, [0, 1, 0, 0], 0, 0, 0, None, OK3)),
        ("duplicated", expect(F, 0, [0, 0, 1, 0], 0, 0, 0, None, OK3)),
        ("seq-mismatch", expect(F, 0, [0, 0, 0, 2], 0, 0, 0, None, OK3)),
        (
            "divergent",
            expect(F, 0, [0, 0, 0, 1], 1, 2, 0, None, &[("n1", 0, false), ("n2", 0, false), ("n3", 1, false)]),
        ),
        ("recovered-indeterminate", expect(P, 0, none, 2, 0, 0, None, OK3)),
        ("unknown-minority", expect(U, 0, none, 0, 0, 0, None, &[("n1", 0, false), ("n2", 0, true), ("n3", 0, true)])),
        (
            "minority-fails",
            expect(F, 0, [1, 0, 0, 0], 0, 0, 0, None, &[("n1", 0, false), ("n2", 0, true), ("n3", 0, true)]),
        ),
        ("majority-pass", expect(P, 0, none, 0, 0, 0, None, &[("n1", 0, false), ("n2", 0, false), ("n3", 0, true)])),
        ("cluster-view-lost", expect(F, 0, none, 0, 0, 0, Some(1), OK3)),
        ("no-scenario", expect(F, 0, none, 0, 1, 0, None, &[("n1", 0, false), ("n2", 1, false)])),
        ("lost-classes", expect(F, 3, none, 0, 0, 3, None, &[("n1", 3, false), ("n2", 3, false), ("n3", 3, false)])),
        ("misplaced", expect(F, 0, [0, 0, 0, 1], 0, 0, 0, None, OK3)),
        ("r1-on-three", expect(P, 0, none, 0, 0, 0, None, &[("n1", 6, false), ("n2", 0, false), ("n3", 6, false)])),
        (
            "placement-r3-on-5",
            expect(P, 0, none, 0, 0, 0, None, &[("n1", 0, false), ("n3", 0, false), ("n4", 0, false)]),
        ),
        (
            "placement-replica-lost",
            expect(F, 0, none, 0, 2, 0, None, &[("n1", 0, false), ("n3", 2, false), ("n4", 0, false)]),
        ),
        (
            "placement-minority",
            expect(U, 0, none, 0, 0, 0, None, &[("n1", 0, false), ("n3", 0, true), ("n4", 0, true)]),
        ),
        (
            "placement-unknown",
            expect(
                U,
                0,
                none,
                0,
                0,
                0,
                None,
                &[("n1", 0, false), ("n2", 0, false), ("n3", 0, false), ("n4", 0, false), ("n5", 0, false)],
            ),
        ),
        ("offline-mixed", expect(P, 0, none, 1, 0, 0, None, &[("n1", 0, false), ("n2", 3, false), ("n3", 2, false)])),
        (
            "offline-all-pass",
            expect(P, 0, none, 1, 0, 0, None, &[("n1", 2, false), ("n2", 0, false), ("n3", 1, false)]),
        ),
        (
            "offline-all-misplaced",
            expect(F, 0, [0, 0, 0, 2], 0, 0, 0, None, &[("n1", 0, false), ("n2", 0, false), ("n3", 4, false)]),
        ),
    ];
    for (case, want) in cases {
        assert_eq!(row(&run(case)), want, "case {case}");
    }
}

#[test]
fn a_known_placement_judges_only_the_replicas_and_names_them() {
    let r = run("placement-r3-on-5");
    assert_eq!(r.replicas, Some(vec!["n1".to_string(), "n3".to_string(), "n4".to_string()]));
    assert_eq!(r.reasons, vec!["stream placed on n1,n3,n4 of 5 node(s) (replicas.json): only they are judged"]);
    let r = run("placement-minority");
    assert_eq!(
        r.reasons[0],
        "only 1 of 3 node(s) readable: fewer than a majority, so a write missing from them may be on the others"
    );
    assert_eq!(r.nodes["n4"].unreadable_reason.as_deref(), Some("no read-back file"));
    let r = run("placement-unknown");
    assert_eq!(r.replicas, None);
    assert!(
        r.reasons[0]
            .starts_with("the stream's placement is unknown (no replica of stream jetsam named the same peers)"),
        "{:?}",
        r.reasons
    );
    // Without a placement every node is judged (the old rule).
    assert_eq!(run("pass-strong").replicas, None);
}

#[test]
fn nothing_acknowledged_is_unknown() {
    let r = run("nothing-acked");
    assert_eq!((r.verdict, r.acked, r.failed, r.indeterminate), (Verdict::Unknown, 0, 1, 1));
    assert_eq!(r.reasons, vec!["no write was acknowledged: nothing was tested".to_string()]);
}

#[test]
fn lost_writes_are_classed_per_writer_and_windows_tied_to_faults() {
    let r = run("lost-classes");
    // 0-0 lost before 0-1 kept (prefix); 0-2 lost between 0-1 and 0-3
    // (middle); 1-3 lost after 1-0, client 1's last kept (postfix).
    assert_eq!(r.lost_classes, LostClasses { prefix: 1, middle: 1, postfix: 1 });
    assert_eq!(r.lost_sample, vec!["0-0", "0-2", "1-3"]);
    let spans: Vec<(u64, u64, u64)> = r.loss_windows.iter().map(|w| (w.start_ns, w.end_ns, w.count)).collect();
    assert_eq!(spans, vec![(50_000_000, 50_000_000, 1), (450_000_000, 450_000_000, 1), (751_000_000, 751_000_000, 1)]);
    // The kill at 450 ms is the first fault at or after the first two
    // windows' start; the third starts after every fault, so it is tied to
    // the last one before it.
    for w in &r.loss_windows {
        let e = w.event.as_ref().expect("tied to the kill");
        assert_eq!((e.t_ns, e.kind, e.nodes.clone()), (450_000_000, EventKind::Kill, vec!["n1".to_string()]));
    }

    let r = run("lost-strong");
    assert_eq!(r.lost_classes, LostClasses { prefix: 0, middle: 0, postfix: 2 });
    assert_eq!(
        (r.loss_windows[0].start_ns, r.loss_windows[0].end_ns, r.loss_windows[0].count),
        (450_000_000, 750_000_000, 2)
    );
}

#[test]
fn a_coordinated_power_loss_is_one_fault_in_its_window() {
    let r = run("coordinated-power-loss");
    assert_eq!((r.verdict, r.lost, r.loss_windows.len()), (Verdict::Fail, 2, 1));
    let e = r.loss_windows[0].event.as_ref().expect("tied to the power loss");
    let nodes: Vec<&str> = e.nodes.iter().map(String::as_str).collect();
    assert_eq!((e.t_ns, e.kind, nodes), (460_000_000, EventKind::PowerLoss, vec!["n1", "n2", "n3"]));
    assert!(
        jetsam_checkers::render_summary(&r).contains("fault: power-loss [n1,n2,n3]"),
        "{}",
        jetsam_checkers::render_summary(&r)
    );
}

#[test]
fn divergence_names_the_first_differing_sequence() {
    let r = run("divergent");
    let d = &r.divergence[0];
    assert_eq!((d.a.as_str(), d.b.as_str()), ("n1", "n3"));
    assert_eq!((d.first_seq, d.a_id.as_deref(), d.b_id.as_deref()), (Some(4), Some("0-2"), Some("1-2")));
    assert_eq!((d.conflicting, d.only_a, d.only_b), (1, 1, 0));
    assert_eq!(d.sample_ids, vec!["0-2", "1-2"]);
    assert_eq!(r.seq_mismatch.sample, vec!["0-2 acked at seq 4; n3 holds 1-2 there"]);

    let r = run("lost-one-node");
    let pairs: Vec<(&str, &str, u64, u64, Option<u64>)> =
        r.divergence.iter().map(|d| (d.a.as_str(), d.b.as_str(), d.only_a, d.only_b, d.first_seq)).collect();
    assert_eq!(pairs, vec![("n1", "n2", 2, 0, None), ("n2", "n3", 0, 2, None)]);
}

#[test]
fn samples_name_the_anomalies() {
    assert_eq!(run("unexpected").unexpected.sample, vec!["7-7", "garbage"]);
    assert_eq!(run("resurrected").resurrected.sample, vec!["1-1 (failed) held by n1, n2, n3"]);
    assert_eq!(run("duplicated").duplicated.sample, vec!["0-1 on n1 at seq 3, 7"]);
    let r = run("seq-mismatch");
    assert_eq!(
        r.seq_mismatch.sample,
        vec!["0-1 acked at seq 3; n1 holds 0-2 there", "0-2 acked at seq 4; n1 holds 0-1 there"]
    );
    assert_eq!(r.nodes["n2"].seq_mismatch, 2);
    assert_eq!(
        run("misplaced").seq_mismatch.sample,
        vec!["0-1 acked at seq 3; n1 holds it only at another seq and nothing at 3"]
    );
}

#[test]
fn async_mode_judges_windows_against_the_bound() {
    let within = run("async-within");
    assert_eq!((within.verdict, within.lost, within.window_bound_ns), (Verdict::Pass, 3, Some(2_000_000_000)));
    let w = &within.loss_windows[..];
    assert_eq!((w.len(), w[0].start_ns, w[0].end_ns, w[0].count), (1, 2_050_000_000, 3_050_000_000, 3));
    assert_eq!(w[0].event.as_ref().map(|e| e.kind), Some(EventKind::PowerLoss));

    let over = run("async-over");
    // 0-1 ..= 0-6 are missing, but 0-3 never completed (indeterminate): 5
    // lost, and the indeterminate write does not split the window.
    assert_eq!((over.verdict, over.lost, over.acked, over.indeterminate), (Verdict::Fail, 5, 9, 1));
    assert_eq!(over.loss_windows.len(), 1);
    assert_eq!(over.loss_windows[0].end_ns - over.loss_windows[0].start_ns, 2_500_000_000);

    // The same folders judged as strong fail on any loss; a bound given on
    // the command line overrides the scenario's.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/async-over");
    let strong = Overrides { mode: Some(jetsam_core::report::Mode::Strong), ..Overrides::default() };
    let (input, config) = load_run(&dir, &strong).unwrap();
    assert_eq!(check(&input, &config).verdict, Verdict::Fail);
    let wide = Overrides { window_bound: Some(std::time::Duration::from_secs(3)), ..Overrides::default() };
    let (input, config) = load_run(&dir, &wide).unwrap();
    assert_eq!(check(&input, &config).verdict, Verdict::Pass);
}

#[test]
fn async_reused_sequences_of_lost_writes_are_judged_by_their_window() {
    let r = run("async-reused");
    assert_eq!((r.verdict, r.lost, r.seq_mismatch.count, r.seq_mismatch_lost), (Verdict::Pass, 3, 3, 3));
    assert_eq!(r.seq_mismatch.sample[0], "0-4 acked at seq 4; n1 holds 0-7 there");
    let w = &r.loss_windows[..];
    assert_eq!((w.len(), w[0].start_ns, w[0].end_ns, w[0].count), (1, 2_050_000_000, 3_050_000_000, 3));

    // Strong judges the same folder by its losses: fail.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/async-reused");
    let strong = Overrides { mode: Some(jetsam_core::report::Mode::Strong), ..Overrides::default() };
    let (input, config) = load_run(&dir, &strong).unwrap();
    assert_eq!(check(&input, &config).verdict, Verdict::Fail);

    // A kept write at a wrong sequence still fails in async mode.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seq-mismatch");
    let asynchronous = Overrides { mode: Some(jetsam_core::report::Mode::Async), ..Overrides::default() };
    let (input, config) = load_run(&dir, &asynchronous).unwrap();
    let r = check(&input, &config);
    assert_eq!((r.verdict, r.lost, r.seq_mismatch_lost), (Verdict::Fail, 0, 0));
}

#[test]
fn unreadable_nodes_carry_their_reason() {
    let r = run("unknown-minority");
    assert_eq!(r.nodes["n2"].unreadable_reason.as_deref(), Some("read-back timed out after 10s"));
    assert_eq!(r.nodes["n3"].unreadable_reason.as_deref(), Some("no read-back file"));
    assert!(r.reasons[0].contains("only 1 of 3 node(s) readable"), "{:?}", r.reasons);
}

#[test]
fn nodes_read_offline_are_readable_and_marked_but_not_compared_for_divergence() {
    use jetsam_core::report::ReadMode;
    let r = run("offline-mixed");
    let reads: Vec<(Option<ReadMode>, bool)> = r.nodes.values().map(|n| (n.read, n.read_note.is_some())).collect();
    assert_eq!(
        reads,
        vec![(Some(ReadMode::Normal), false), (Some(ReadMode::Offline), true), (Some(ReadMode::Offline), true)]
    );
    assert!(r.nodes["n2"].read_note.as_deref().unwrap().contains("offset 4096"), "{:?}", r.nodes["n2"]);
    // n2 lags and n3 holds the indeterminate 1-2 where 0-3 was acked: on
    // nodes that missed convergence that is no divergence or seq-mismatch.
    assert!(!r.divergent && r.seq_mismatch.count == 0 && r.nodes["n3"].seq_mismatch == 0, "{r:?}");
    assert!(r.reasons.iter().any(|x| x.starts_with("read offline") && x.contains("n2 (") && x.contains("n3 (")));
    // Every node offline still decides; one holding acked ids at other
    // sequences fails.
    let r = run("offline-all-misplaced");
    assert_eq!(r.nodes["n2"].seq_mismatch, 2);
    assert!(r.seq_mismatch.sample[0].contains("n2 holds"), "{:?}", r.seq_mismatch);
    let r = run("majority-pass");
    assert_eq!(r.nodes["n3"].read, None, "an unreadable node was not read");
}
