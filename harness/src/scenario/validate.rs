//! Validation of a parsed scenario: everything the harness requires before
//! anything starts (the target's own rules are checked by the target). Every
//! rejection is a user error naming the line of the offending key and the fix.

use super::*;
use jetsam_core::trigger::{Trigger, TriggerError};

use jetsam_core::duration::parse_duration;

pub(super) fn check_seed(ctx: &Ctx, seed: u64) -> Result<(), ScenarioError> {
    // TOML integers are signed 64-bit: a larger seed could not be written to the resolved file.
    if seed > i64::MAX as u64 {
        return Err(ctx.invalid(
            ctx.line("", None, "seed"),
            format!("seed {seed} is larger than {}", i64::MAX),
            "use a seed below 2^63",
        ));
    }
    Ok(())
}

pub(super) fn validate(ctx: &Ctx, s: &Scenario) -> Result<(), ScenarioError> {
    validate_top(ctx, s)?;
    validate_target(ctx, s)?;
    validate_stream(ctx, s)?;
    validate_workload(ctx, s)?;
    for (i, fault) in s.faults.iter().enumerate() {
        validate_fault(ctx, s, i, fault)?;
    }
    if s.check.window_bound.is_some_and(|b| b.is_zero()) {
        return Err(ctx.invalid(
            ctx.line("check", None, "window_bound"),
            "check.window_bound = \"0s\"",
            "set a positive bound such as \"5s\" or remove it for the default (sync interval plus slack)",
        ));
    }
    Ok(())
}

/// Name, format version, size and seed.
fn validate_top(ctx: &Ctx, s: &Scenario) -> Result<(), ScenarioError> {
    let top = |key| ctx.line("", None, key);
    if !jetsam_core::scenario::is_plain_name(&s.name) {
        return Err(ctx.invalid(
            top("name"),
            format!("name {:?} is not a plain name (it becomes a results folder)", s.name),
            "use letters, digits, '-', '_' and '.' only, e.g. name = \"kill-strong\"",
        ));
    }
    if s.format_version.is_some_and(|v| v != FORMAT_VERSION) {
        return Err(ctx.invalid(
            top("format_version"),
            format!("format_version {} is not {FORMAT_VERSION}", s.format_version.unwrap_or_default()),
            "remove format_version (only resolved files carry it)",
        ));
    }
    if !(1..=NODES_MAX).contains(&s.nodes) {
        return Err(ctx.invalid(
            top("nodes"),
            format!("nodes = {} is out of range", s.nodes),
            format!("set nodes between 1 and {NODES_MAX}"),
        ));
    }
    if s.duration.is_zero() || s.duration > DURATION_MAX {
        return Err(ctx.invalid(
            top("duration"),
            format!("duration {:?} is out of range", s.duration),
            "set a duration above 0 and at most 24h, e.g. duration = \"30s\"",
        ));
    }
    if let Some(seed) = s.seed {
        check_seed(ctx, seed)?;
    }
    Ok(())
}

/// The target kind and the options that belong to it.
fn validate_target(ctx: &Ctx, s: &Scenario) -> Result<(), ScenarioError> {
    if s.target.kind != "adapter" {
        if s.target.file.is_some() {
            return Err(ctx.invalid(
                ctx.line("target", None, "file"),
                "target.file is an adapter-target option",
                "remove target.file or set target.kind = \"adapter\"",
            ));
        }
        if !s.target.settings.is_empty() {
            return Err(ctx.invalid(
                ctx.line("target", None, "settings"),
                "target.settings is an adapter-target option",
                "remove target.settings or set target.kind = \"adapter\"",
            ));
        }
    }
    match s.target.kind.as_str() {
        "adapter" => {
            if s.target.file.as_deref().is_none_or(str::is_empty) {
                return Err(ctx.invalid(
                    ctx.line("target", None, "kind"),
                    "target.kind = \"adapter\" needs target.file",
                    "set target.file to the target file, e.g. \"targets/redis/target.toml\" (relative to the directory jetsam runs in)",
                ));
            }
            for (key, set) in
                [("bug", s.target.bug.is_some()), ("version", s.target.version.is_some()), ("repair", s.target.repair)]
            {
                if set {
                    return Err(ctx.invalid(
                        ctx.line("target", None, key),
                        format!("target.{key} is not an adapter-target option"),
                        "remove it; put the system's own knobs in the target file's [settings] and set them with target.settings",
                    ));
                }
            }
        }
        "node" => {
            if s.target.version.is_some() {
                return Err(ctx.invalid(
                    ctx.line("target", None, "version"),
                    "target.version is a NATS option",
                    "remove target.version or set target.kind = \"nats\"",
                ));
            }
            if s.target.repair && s.target.bug.as_deref() == Some("trust-corrupt-log") {
                return Err(ctx.invalid(
                    ctx.line("target", None, "repair"),
                    "target.repair and target.bug = \"trust-corrupt-log\" are alternatives",
                    "remove target.repair or target.bug",
                ));
            }
        }
        "nats" => {
            if s.target.bug.is_some() {
                return Err(ctx.invalid(
                    ctx.line("target", None, "bug"),
                    "target.bug is a reference-node option",
                    "remove target.bug or set target.kind = \"node\"",
                ));
            }
            if s.target.repair {
                return Err(ctx.invalid(
                    ctx.line("target", None, "repair"),
                    "target.repair is a reference-node option",
                    "remove target.repair or set target.kind = \"node\"",
                ));
            }
        }
        other => {
            return Err(ctx.invalid(
                ctx.line("target", None, "kind"),
                format!("unknown target kind {other:?}"),
                "set target.kind = \"node\" (default), \"nats\" or \"adapter\"",
            ));
        }
    }
    Ok(())
}

/// Replicas and the sync setting.
fn validate_stream(ctx: &Ctx, s: &Scenario) -> Result<(), ScenarioError> {
    if s.stream.replicas == 0 || s.stream.replicas > s.nodes {
        return Err(ctx.invalid(
            ctx.line("stream", None, "replicas"),
            format!("stream.replicas = {} with {} nodes", s.stream.replicas, s.nodes),
            "set stream.replicas between 1 and nodes",
        ));
    }
    if let Some(sync) = &s.stream.sync
        && sync != "always"
    {
        match parse_duration(sync) {
            Ok(d) if !d.is_zero() => {}
            Ok(_) => {
                return Err(ctx.invalid(
                    ctx.line("stream", None, "sync"),
                    "stream.sync = \"0s\"",
                    "write stream.sync = \"always\" or a positive interval such as \"2m\"",
                ));
            }
            Err(e) => {
                return Err(ctx.invalid(
                    ctx.line("stream", None, "sync"),
                    format!("stream.sync: {e}"),
                    "write stream.sync = \"always\" or an interval such as \"2m\"",
                ));
            }
        }
    }
    Ok(())
}

/// Clients, rate, payload, timeout and in-flight limits.
fn validate_workload(ctx: &Ctx, s: &Scenario) -> Result<(), ScenarioError> {
    let w = &s.workload;
    let wline = |key| ctx.line("workload", None, key);
    if !(1..=CLIENTS_MAX).contains(&w.clients) {
        return Err(ctx.invalid(
            wline("clients"),
            format!("workload.clients = {}", w.clients),
            format!("set workload.clients between 1 and {CLIENTS_MAX}"),
        ));
    }
    if w.rate == Some(0) {
        return Err(ctx.invalid(
            wline("rate"),
            "workload.rate = 0 would publish nothing",
            "set a positive rate (publishes per second over all clients) or remove it for as fast as acks come",
        ));
    }
    if w.payload_bytes > PAYLOAD_BYTES_MAX {
        return Err(ctx.invalid(
            wline("payload_bytes"),
            format!("workload.payload_bytes = {} is above {PAYLOAD_BYTES_MAX}", w.payload_bytes),
            "use a smaller payload",
        ));
    }
    if w.timeout.is_zero() || w.timeout > TIMEOUT_MAX {
        return Err(ctx.invalid(
            wline("timeout"),
            format!("workload.timeout {:?} is out of range", w.timeout),
            "set workload.timeout above 0 and at most 10m, e.g. \"2s\"",
        ));
    }
    if !(1..=IN_FLIGHT_MAX).contains(&w.in_flight) {
        return Err(ctx.invalid(
            wline("in_flight"),
            format!("workload.in_flight = {}", w.in_flight),
            format!("set workload.in_flight between 1 and {IN_FLIGHT_MAX}"),
        ));
    }
    Ok(())
}

/// Kind-specific options and target rules.
fn validate_fault_options(ctx: &Ctx, s: &Scenario, i: usize, f: &Fault) -> Result<(), ScenarioError> {
    let line = |key| ctx.line("faults", Some(i), key);
    let which = format!("faults[{i}] ({})", f.kind);
    let words_only_one = |what: &str| -> Result<(), ScenarioError> {
        match &f.targets {
            Targets::Named(w) if w != "one" => Err(ctx.invalid(
                line("targets"),
                format!("{which}: targets = {w:?} does not apply"),
                format!("{what}, or list node names, e.g. targets = [\"n1\"]"),
            )),
            _ => Ok(()),
        }
    };
    match f.kind.as_str() {
        "power-loss" => {
            if let Err(e) = jetsam_faults::power::DiscardModel::from_options(&f.options) {
                let key = ["keep_fraction", "writeback_after", "discard"]
                    .into_iter()
                    .find(|k| f.options.contains_key(*k))
                    .unwrap_or("kind");
                return Err(ctx.invalid(
                    line(key),
                    format!("{which}: {e}"),
                    "set one of discard = \"all\", keep_fraction = 0.3 or writeback_after = \"30s\"",
                ));
            }
            if let Err(e) = jetsam_faults::power::DirentModel::from_options(&f.options) {
                let key = if f.options.contains_key("dirents_after") { "dirents_after" } else { "dirents" };
                return Err(ctx.invalid(
                    line(key),
                    format!("{which}: {e}"),
                    "set dirents = \"lose-unsynced\" (optionally with dirents_after = \"5s\") or leave both out",
                ));
            }
        }
        "io-error" => {
            if let Some(mode) = f.options.get("mode")
                && mode.as_str().and_then(jetsam_faults::power::IoErrorMode::parse).is_none()
            {
                return Err(ctx.invalid(
                    line("mode"),
                    format!("{which}: mode = {mode} is not a known io-error mode"),
                    "set mode = \"eio\" (failed syncs), \"enospc\" (failed writes) or \"both\"",
                ));
            }
        }
        "partition" => {
            words_only_one("a partition picks its sides by shape: set shape")?;
            let shape = match (&f.targets, f.options.get("shape")) {
                (Targets::Nodes(_), Some(_)) => {
                    return Err(ctx.invalid(
                        line("shape"),
                        format!("{which}: both a shape and a list of nodes"),
                        "give shape = \"...\" or targets = [names of one side], not both",
                    ));
                }
                (Targets::Nodes(side), None) => jetsam_faults::net::Shape::Nodes(side.clone()),
                (_, Some(v)) => {
                    let text = v.as_str().unwrap_or("");
                    text.parse::<jetsam_faults::net::Shape>().map_err(|e| {
                        ctx.invalid(line("shape"), format!("{which}: {e}"), "set shape to one of the names above")
                    })?
                }
                (_, None) => SHAPE_DEFAULT.parse().expect("the default shape parses"),
            };
            if let Err(e) = jetsam_faults::net::validate_shape(&shape, &s.node_names()) {
                return Err(ctx.invalid(line("shape"), format!("{which}: {e}"), "choose a shape these nodes allow"));
            }
        }
        "bitflip" | "truncate" => {
            words_only_one("disk faults hit a seeded fixed minority of the nodes (one of 3, two of 5)")?;
            if matches!(f.targets, Targets::Named(_)) && s.nodes < 3 {
                return Err(ctx.invalid(
                    line("kind"),
                    format!("{which}: {} nodes have no minority to corrupt", s.nodes),
                    "run 3 or more nodes, or list the nodes to corrupt in targets",
                ));
            }
            if let Some(files) = f.options.get("files") {
                let ok = files
                    .as_array()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(|g| g.as_str().is_some_and(|g| !g.is_empty())));
                if !ok {
                    return Err(ctx.invalid(
                        line("files"),
                        format!("{which}: files = {files} is not a list of globs"),
                        "write files = [\"log/*.seg\"] (relative to the node's data dir), or remove it for the target's default",
                    ));
                }
            }
            if let Some(bits) = f.options.get("bits")
                && !bits.as_integer().is_some_and(|b| (1..=i64::from(BITS_MAX)).contains(&b))
            {
                return Err(ctx.invalid(
                    line("bits"),
                    format!("{which}: bits = {bits}"),
                    format!("set bits between 1 and {BITS_MAX} (bits flipped per corrupted file)"),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// `restart` (kill and power-loss): a boolean; `false` keeps the nodes
/// down for good, so only at fixed times (`every` would take one more node
/// down at each interval until none is left to read).
fn validate_restart(ctx: &Ctx, i: usize, f: &Fault) -> Result<(), ScenarioError> {
    let Some(value) = f.options.get("restart") else { return Ok(()) };
    let line = |key| ctx.line("faults", Some(i), key);
    let which = format!("faults[{i}] ({})", f.kind);
    let Some(restart) = value.as_bool() else {
        return Err(ctx.invalid(
            line("restart"),
            format!("{which}: restart = {value} is not true or false"),
            "write restart = false to keep the node down to the end of the run (default true: restarted at its heal)",
        ));
    };
    if !restart && f.every.is_some() {
        return Err(ctx.invalid(
            line("restart"),
            format!("{which}: restart = false with every: each interval would take one more node down for good"),
            "give fixed times, e.g. at = [\"8s\"], or remove restart = false",
        ));
    }
    Ok(())
}

pub(super) fn validate_fault(ctx: &Ctx, s: &Scenario, i: usize, f: &Fault) -> Result<(), ScenarioError> {
    let line = |key| ctx.line("faults", Some(i), key);
    let which = format!("faults[{i}] ({})", f.kind);
    if !FAULT_KINDS_SUPPORTED.contains(&f.kind.as_str()) {
        return Err(ctx.invalid(
            line("kind"),
            format!("unknown fault kind {:?}", f.kind),
            format!("use one of: {}", FAULT_KINDS_SUPPORTED.join(", ")),
        ));
    }
    if f.options.contains_key("restart") && !KEEP_DOWN_KINDS.contains(&f.kind.as_str()) {
        return Err(ctx.invalid(
            line("restart"),
            format!("{which}: restart applies only to {} faults", KEEP_DOWN_KINDS.join(" and ")),
            format!("remove restart, or keep a node down with kind = \"kill\" or \"power-loss\" and restart = false (a {} ends at its heal)", f.kind),
        ));
    }
    let allowed: &[&str] = match f.kind.as_str() {
        "kill" => &["restart"],
        "power-loss" => &["discard", "keep_fraction", "writeback_after", "dirents", "dirents_after", "restart"],
        "io-error" => &["mode"],
        "partition" => &["shape"],
        "bitflip" => &["files", "bits"],
        "truncate" => &["files"],
        _ => &[],
    };
    if let Some(key) = f.options.keys().find(|k| !allowed.contains(&k.as_str())) {
        let fix = if allowed.is_empty() {
            format!("a {} fault takes only kind, targets, every or at, and heal_after", f.kind)
        } else {
            format!("a {} fault takes kind, targets, every or at, heal_after and {}", f.kind, allowed.join(", "))
        };
        return Err(ctx.invalid(line(key), format!("{which}: unknown key {key:?}"), fix));
    }
    validate_fault_options(ctx, s, i, f)?;
    validate_restart(ctx, i, f)?;
    validate_targets(ctx, s, i, f)?;
    validate_timing(ctx, s, i, f)?;
    if f.heal_after.is_some_and(|h| h.is_zero()) {
        return Err(ctx.invalid(
            line("heal_after"),
            format!("{which}: heal_after = \"0s\""),
            "set a positive heal_after (how long the fault lasts)",
        ));
    }
    Ok(())
}

/// A fault line's targets: a selector word or known node names, each once.
fn validate_targets(ctx: &Ctx, s: &Scenario, i: usize, f: &Fault) -> Result<(), ScenarioError> {
    let line = |key| ctx.line("faults", Some(i), key);
    let which = format!("faults[{i}] ({})", f.kind);
    match &f.targets {
        Targets::Named(word) => {
            if !SELECTORS.contains(&word.as_str()) {
                return Err(ctx.invalid(
                    line("targets"),
                    format!("{which}: unknown targets {word:?}"),
                    format!("use one of {} or a list of node names such as [\"n1\"]", SELECTORS.join(", ")),
                ));
            }
        }
        Targets::Nodes(names) => {
            let known = s.node_names();
            if names.is_empty() {
                return Err(ctx.invalid(
                    line("targets"),
                    format!("{which}: empty targets list"),
                    "name at least one node",
                ));
            }
            for (j, name) in names.iter().enumerate() {
                if !known.contains(name) {
                    return Err(ctx.invalid(
                        line("targets"),
                        format!("{which}: unknown node {name:?}"),
                        format!("nodes of this scenario are {}", known.join(", ")),
                    ));
                }
                if names[..j].contains(name) {
                    return Err(ctx.invalid(
                        line("targets"),
                        format!("{which}: node {name:?} listed twice"),
                        "list each node once",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// When a fault line fires: every, at (times within the run), or on an event.
fn validate_timing(ctx: &Ctx, s: &Scenario, i: usize, f: &Fault) -> Result<(), ScenarioError> {
    let line = |key| ctx.line("faults", Some(i), key);
    let which = format!("faults[{i}] ({})", f.kind);
    if f.on.is_some() {
        return validate_trigger(ctx, s, i, f);
    }
    if f.delay.is_some() {
        return Err(ctx.invalid(
            line("delay"),
            format!("{which}: delay without on"),
            "delay is the wait after an event: add on = \"acks:1000\" (or another event) or remove delay",
        ));
    }
    match (f.every, f.at.is_empty()) {
        (Some(_), false) => {
            return Err(ctx.invalid(
                line("every"),
                format!("{which}: both every and at"),
                "give either every = \"5s\" or at = [\"3s\", ...], not both",
            ));
        }
        (None, true) => {
            return Err(ctx.invalid(
                line("kind"),
                format!("{which}: no every and no at: it would never happen"),
                "add every = \"5s\", at = [\"3s\"] or on = \"acks:1000\"",
            ));
        }
        (Some(every), true) => {
            if every.is_zero() {
                return Err(ctx.invalid(line("every"), format!("{which}: every = \"0s\""), "set a positive interval"));
            }
        }
        (None, false) => {
            for at in &f.at {
                let t = parse_duration(at).map_err(|e| {
                    ctx.invalid(line("at"), format!("{which}: at: {e}"), "write times such as at = [\"3s\", \"1.5m\"]")
                })?;
                if t >= s.duration {
                    return Err(ctx.invalid(
                        line("at"),
                        format!("{which}: at {at:?} is not before the end of the run ({:?})", s.duration),
                        "use times below the duration",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// An event-triggered fault line: `on` alone (no every, no at), a known
/// event on known nodes, a delay within the run.
fn validate_trigger(ctx: &Ctx, s: &Scenario, i: usize, f: &Fault) -> Result<(), ScenarioError> {
    let line = |key| ctx.line("faults", Some(i), key);
    let which = format!("faults[{i}] ({})", f.kind);
    let on = f.on.as_deref().expect("called for on lines");
    if f.every.is_some() || !f.at.is_empty() {
        let key = if f.every.is_some() { "every" } else { "at" };
        return Err(ctx.invalid(
            line(key),
            format!("{which}: both on and {key}"),
            "a fault fires on an event (on) or at times (every, at), not both: remove one",
        ));
    }
    let trigger: Trigger = on.parse().map_err(|e: TriggerError| {
        ctx.invalid(line("on"), format!("{which}: on: {e}"), "see docs/scenarios.md, \"Event triggers\"")
    })?;
    if let Some(node) = trigger.node()
        && !s.node_names().iter().any(|n| n == node)
    {
        return Err(ctx.invalid(
            line("on"),
            format!("{which}: on = {on:?} names unknown node {node:?}"),
            format!("nodes of this scenario are {}", s.node_names().join(", ")),
        ));
    }
    if let Trigger::Fsync { node, .. } = &trigger {
        // One armed count per node's tracer.
        if s.faults[..i].iter().any(|g| g.fsync_watched().as_ref() == Some(node)) {
            return Err(ctx.invalid(
                line("on"),
                format!("{which}: a second fsync trigger on {node}"),
                "a node's tracer counts for one fsync trigger: keep one per node",
            ));
        }
    }
    if let Some(delay) = f.delay
        && delay >= s.duration
    {
        return Err(ctx.invalid(
            line("delay"),
            format!("{which}: delay {delay:?} is not shorter than the run ({:?})", s.duration),
            "use a delay below the duration",
        ));
    }
    Ok(())
}

/// Events the target cannot see are refused before anything starts.
pub(super) fn validate_triggers_seen(ctx: &Ctx, s: &Scenario, target: &dyn Target) -> Result<(), ScenarioError> {
    for (i, f) in s.faults.iter().enumerate() {
        let Some(trigger) = f.trigger() else { continue };
        if matches!(trigger, Trigger::Behind { .. }) && !target.sees_behind() {
            return Err(ctx.invalid(
                ctx.line("faults", Some(i), "on"),
                format!("faults[{i}] ({}): target kind {:?} cannot see the event {trigger}", f.kind, target.kind()),
                "behind:NODE:K needs a target that reports each node's position (the reference node, NATS); use acks:K, leader-change or fsync:NODE:K",
            ));
        }
    }
    Ok(())
}
