//! The fault timeline: one band per injection line of `events.jsonl`, on
//! the lane of the node it hit (a partition on the network lane), from the
//! injection to the event that heals it, or to the end of the run when
//! nothing did.

use jetsam_core::event::{Event, EventKind, faults};

/// Where a band is drawn.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    /// Links between nodes (partitions).
    Network,
    Node(String),
}

/// One injection and its heal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub lane: Lane,
    pub kind: EventKind,
    pub start_ns: u64,
    /// The heal's time, or the run's end when `heal` is None.
    pub end_ns: u64,
    /// The event that healed it.
    pub heal: Option<EventKind>,
    /// Index of its fault in [`jetsam_core::event::faults`] of the same events.
    pub fault: usize,
}

/// The kinds that end a band of `kind` on a node.
fn heals(kind: EventKind) -> &'static [EventKind] {
    match kind {
        EventKind::Kill | EventKind::PowerLoss | EventKind::Bitflip | EventKind::Truncate => &[EventKind::Restart],
        EventKind::Pause => &[EventKind::Resume, EventKind::Restart],
        EventKind::IoError => &[EventKind::IoOk],
        EventKind::Partition => &[EventKind::Heal],
        _ => &[],
    }
}

/// The bands of a timeline (events in time order); `end_ns` closes the unhealed ones.
pub fn bands(events: &[Event], end_ns: u64) -> Vec<Band> {
    let mut out = Vec::new();
    for (fault, f) in faults(events).iter().enumerate() {
        for &i in &f.events {
            let e = &events[i];
            let lanes: Vec<Lane> = if e.kind == EventKind::Partition || e.nodes.is_empty() {
                vec![Lane::Network]
            } else {
                e.nodes.iter().map(|n| Lane::Node(n.clone())).collect()
            };
            for lane in lanes {
                let healer = events[i + 1..].iter().find(|h| {
                    heals(e.kind).contains(&h.kind)
                        && match &lane {
                            Lane::Network => true,
                            Lane::Node(n) => h.nodes.contains(n),
                        }
                });
                out.push(Band {
                    lane,
                    kind: e.kind,
                    start_ns: e.t_ns,
                    end_ns: healer.map_or(end_ns, |h| h.t_ns).max(e.t_ns),
                    heal: healer.map(|h| h.kind),
                    fault,
                });
            }
        }
    }
    out
}

/// The kind's name as events.jsonl spells it.
pub fn kind_name(kind: EventKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t_ns: u64, kind: EventKind, nodes: &[&str]) -> Event {
        Event::new(t_ns, kind, nodes.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn each_injection_is_a_band_ended_by_its_heal() {
        let planned = |e: Event| e.with("fault", 0).with("planned_ns", 5);
        let events = vec![
            planned(ev(10, EventKind::PowerLoss, &["n1"])),
            planned(ev(11, EventKind::PowerLoss, &["n2"])),
            ev(20, EventKind::Partition, &["n3"]),
            ev(30, EventKind::Restart, &["n2"]),
            ev(31, EventKind::Restart, &["n1"]),
            ev(40, EventKind::Heal, &["n1", "n3"]),
            ev(50, EventKind::Pause, &["n3"]),
        ];
        let b = bands(&events, 100);
        let got: Vec<(Lane, u64, u64, usize)> =
            b.iter().map(|b| (b.lane.clone(), b.start_ns, b.end_ns, b.fault)).collect();
        assert_eq!(
            got,
            vec![
                (Lane::Node("n1".into()), 10, 31, 0),
                (Lane::Node("n2".into()), 11, 30, 0),
                (Lane::Network, 20, 40, 1),
                (Lane::Node("n3".into()), 50, 100, 2),
            ]
        );
        assert_eq!((b[0].heal, b[3].heal), (Some(EventKind::Restart), None));
        assert_eq!(kind_name(EventKind::PowerLoss), "power-loss");
    }
}
