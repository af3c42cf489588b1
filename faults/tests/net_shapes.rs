//! Partition shapes: the right groups for 3 and 5 nodes, symmetric cuts that
//! cut exactly the pairs sharing no group, and the same seed gives the same cut.

use jetsam_faults::net::{NetError, Shape, partition_event, shape_cut, validate_shape};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

fn names(n: u32) -> Vec<String> {
    jetsam_core::scenario::node_names(n)
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Checks the cut against the groups: a pair is cut iff no group holds both.
fn assert_consistent(nodes: &[String], cut: &BTreeSet<(String, String)>, groups: &[Vec<String>]) {
    let mut covered = BTreeSet::new();
    for g in groups {
        let mut sorted = g.clone();
        sorted.sort();
        assert_eq!(&sorted, g, "group not sorted: {g:?}");
        covered.extend(g.iter().cloned());
    }
    assert_eq!(covered, nodes.iter().cloned().collect::<BTreeSet<_>>(), "groups do not cover every node");
    for a in nodes {
        assert!(!cut.contains(&(a.clone(), a.clone())), "self link cut");
        for b in nodes {
            if a == b {
                continue;
            }
            let together = groups.iter().any(|g| g.contains(a) && g.contains(b));
            assert_eq!(cut.contains(&(a.clone(), b.clone())), !together, "pair {a} -> {b} in {groups:?}");
            assert_eq!(cut.contains(&(a.clone(), b.clone())), cut.contains(&(b.clone(), a.clone())), "asymmetric");
        }
    }
}

fn sizes(groups: &[Vec<String>]) -> Vec<usize> {
    groups.iter().map(Vec::len).collect()
}

#[test]
fn isolate_one_isolates_the_leader_or_a_seeded_node() {
    for n in [3, 5] {
        let nodes = names(n);
        let (cut, groups) = shape_cut(&Shape::IsolateOne, &nodes, &mut rng(1), Some("n2"));
        assert_consistent(&nodes, &cut, &groups);
        assert_eq!(groups[0], vec!["n2".to_string()]);
        assert_eq!(groups[1].len(), n as usize - 1);
        assert_eq!(cut.len(), 2 * (n as usize - 1));

        let (cut, groups) = shape_cut(&Shape::IsolateOne, &nodes, &mut rng(1), None);
        assert_consistent(&nodes, &cut, &groups);
        assert_eq!(sizes(&groups), vec![1, n as usize - 1]);
    }
    // Over many seeds, every node gets isolated at some point.
    let nodes = names(5);
    let victims: BTreeSet<String> =
        (0..64).map(|s| shape_cut(&Shape::IsolateOne, &nodes, &mut rng(s), None).1[0][0].clone()).collect();
    assert_eq!(victims.len(), 5, "{victims:?}");
}

#[test]
fn majority_minority_and_random_halves_split_by_size() {
    for (n, minority) in [(2, 1), (3, 1), (4, 1), (5, 2), (7, 3)] {
        let nodes = names(n);
        let (cut, groups) = shape_cut(&Shape::MajorityMinority, &nodes, &mut rng(3), None);
        assert_consistent(&nodes, &cut, &groups);
        assert_eq!(sizes(&groups), vec![minority, n as usize - minority], "majority-minority over {n}");
    }
    for (n, half) in [(2, 1), (3, 1), (4, 2), (5, 2)] {
        let nodes = names(n);
        let (cut, groups) = shape_cut(&Shape::RandomHalves, &nodes, &mut rng(3), None);
        assert_consistent(&nodes, &cut, &groups);
        assert_eq!(sizes(&groups), vec![half, n as usize - half], "random-halves over {n}");
    }
}

#[test]
fn bridge_keeps_one_node_talking_to_both_halves() {
    for (n, expect) in [(3, vec![2, 2]), (5, vec![3, 3])] {
        let nodes = names(n);
        let (cut, groups) = shape_cut(&Shape::Bridge, &nodes, &mut rng(9), None);
        assert_consistent(&nodes, &cut, &groups);
        assert_eq!(sizes(&groups), expect);
        let shared: Vec<&String> = groups[0].iter().filter(|x| groups[1].contains(x)).collect();
        assert_eq!(shared.len(), 1, "exactly one bridge node: {groups:?}");
        let bridge = shared[0];
        assert!(!cut.iter().any(|(a, b)| a == bridge || b == bridge), "bridge {bridge} lost a link");
        let halves = (n as usize - 1) / 2;
        // Each half's nodes cannot reach the other half's.
        assert_eq!(cut.len(), 2 * halves * (n as usize - 1 - halves));
    }
}

#[test]
fn nodes_shape_cuts_the_listed_side_off() {
    let nodes = names(5);
    let shape = Shape::Nodes(vec!["n4".into(), "n1".into()]);
    let (cut, groups) = shape_cut(&shape, &nodes, &mut rng(0), None);
    assert_consistent(&nodes, &cut, &groups);
    assert_eq!(groups, vec![vec!["n1".to_string(), "n4".to_string()], vec!["n2".into(), "n3".into(), "n5".into()]]);
    assert_eq!(cut.len(), 12);
}

#[test]
fn same_seed_same_cut_whatever_the_input_order() {
    let nodes = names(5);
    let mut shuffled = nodes.clone();
    shuffled.reverse();
    for shape in [Shape::IsolateOne, Shape::MajorityMinority, Shape::Bridge, Shape::RandomHalves] {
        let one = shape_cut(&shape, &nodes, &mut rng(42), None);
        let two = shape_cut(&shape, &shuffled, &mut rng(42), None);
        assert_eq!(one, two, "{shape}");
        // Different seeds do not all give the same cut.
        let distinct: BTreeSet<_> = (0..32).map(|s| shape_cut(&shape, &nodes, &mut rng(s), None).0).collect();
        assert!(distinct.len() > 1, "{shape} ignores the seed");
    }
}

#[test]
fn bad_shapes_are_rejected_before_use() {
    let err = validate_shape(&Shape::Bridge, &names(2)).unwrap_err();
    assert!(err.to_string().contains("at least 3 nodes"), "{err}");
    assert!(validate_shape(&Shape::IsolateOne, &names(1)).is_err());
    assert!(validate_shape(&Shape::Nodes(vec!["n9".into()]), &names(3)).unwrap_err().to_string().contains("n9"));
    assert!(validate_shape(&Shape::Nodes(vec![]), &names(3)).is_err());
    assert!(validate_shape(&Shape::Nodes(names(3)), &names(3)).is_err());
    assert!(validate_shape(&Shape::RandomHalves, &["n1".into(), "n1".into()]).is_err());
    assert!(validate_shape(&Shape::MajorityMinority, &names(3)).is_ok());
    let parsed: Vec<Shape> =
        ["isolate-one", "majority-minority", "bridge", "random-halves"].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(parsed, vec![Shape::IsolateOne, Shape::MajorityMinority, Shape::Bridge, Shape::RandomHalves]);
    for s in &parsed {
        assert_eq!(s.name().parse::<Shape>().unwrap(), *s);
    }
    let err = "ring".parse::<Shape>().unwrap_err();
    assert!(matches!(err, NetError::UnknownShape { .. }) && err.to_string().contains("random-halves"), "{err}");
}

#[test]
#[should_panic(expected = "leader n9 is not one of the nodes")]
fn isolating_an_unknown_leader_panics() {
    shape_cut(&Shape::IsolateOne, &names(3), &mut rng(0), Some("n9"));
}

#[test]
fn partition_events_name_shape_groups_and_links() {
    let nodes = names(3);
    let (cut, groups) = shape_cut(&Shape::IsolateOne, &nodes, &mut rng(0), Some("n3"));
    let line = serde_json::to_string(&partition_event(7, &Shape::IsolateOne, &groups, &cut)).unwrap();
    assert_eq!(
        line,
        r#"{"t_ns":7,"kind":"partition","nodes":["n1","n2","n3"],"groups":[["n3"],["n1","n2"]],"links":[["n1","n3"],["n2","n3"],["n3","n1"],["n3","n2"]],"shape":"isolate-one"}"#
    );
}
