//! Loading a scenario file for `jetsam run`: parse (unknown keys and bad
//! values are rejected with serde's line and column), apply the CLI
//! overrides, validate everything the harness and the target require, and
//! produce the resolved scenario (seed and defaults filled in) that is
//! written as `scenario.resolved.toml`. Every rejection names the file, the
//! line of the offending key when it can be found, and the fix; all of them
//! are user errors (exit code 2) and happen before anything starts.
//!
//! This module does not start anything and does not know how faults are
//! injected; it only knows which fault kinds `jetsam run` can inject.

use jetsam_core::FORMAT_VERSION;
use jetsam_core::duration::parse_duration;
use jetsam_core::report::Mode;
use jetsam_core::scenario::{Fault, Scenario, ScenarioError, Targets};
use jetsam_targets::Target;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Fault kinds `jetsam run` injects.
pub const FAULT_KINDS_SUPPORTED: &[&str] =
    &["kill", "pause", "power-loss", "io-error", "partition", "bitflip", "truncate"];
/// Flipped bits per corrupted file when a bitflip fault does not say (`bits`).
pub const BITS_DEFAULT: u32 = 2;
/// Most bits a bitflip fault may flip per file.
pub const BITS_MAX: u32 = 4096;
/// Partition shape when a partition fault does not say (`shape`).
pub const SHAPE_DEFAULT: &str = "majority-minority";
/// Selector words of `targets`.
pub const SELECTORS: &[&str] = &["one", "minority", "majority", "all", "leader"];
/// How long a fault lasts when the scenario does not say (`heal_after`).
pub const HEAL_AFTER_DEFAULT: Duration = Duration::from_secs(2);
/// Most nodes a scenario may ask for.
pub const NODES_MAX: u32 = 15;
/// Longest run a scenario may ask for.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
/// Most workload clients.
pub const CLIENTS_MAX: u32 = 1024;
/// Largest payload.
pub const PAYLOAD_BYTES_MAX: u32 = 1 << 20;
/// Longest per-publish timeout.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(600);
/// Most publishes in flight per client.
pub const IN_FLIGHT_MAX: u32 = 1024;

/// Command-line overrides of a scenario's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub seed: Option<u64>,
    pub duration: Option<Duration>,
    /// `--nats-version`: replaces `target.version` of NATS scenarios (scenarios
    /// of other targets are left alone, so one suite may mix targets).
    pub nats_version: Option<String>,
}

/// A scenario that cannot be used (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to read scenario {}: {source}; check the path", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}

/// A loaded, validated scenario with its seed fixed and defaults filled in.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub path: PathBuf,
    pub scenario: Scenario,
    pub seed: u64,
}

impl Resolved {
    /// The text of `scenario.resolved.toml`.
    pub fn to_toml(&self) -> String {
        let mut text = format!(
            "# Resolved by jetsam run from {}; replay with: jetsam run {} --seed {} --duration {}\n",
            self.path.display(),
            self.path.display(),
            self.seed,
            jetsam_core::duration::format_duration(self.scenario.duration)
        );
        text.push_str(&toml::to_string_pretty(&self.scenario).expect("a scenario always serializes"));
        text
    }
}

/// Reads and validates a scenario file. `target` is asked for its own rules
/// once the generic ones pass; `seed_if_unset` gives the seed when neither
/// the file nor the CLI sets one.
pub fn load(
    path: &Path,
    overrides: &Overrides,
    target: Option<&dyn Target>,
    seed_if_unset: impl FnOnce() -> u64,
) -> Result<Resolved, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
    let file = path.display().to_string();
    let mut scenario = Scenario::from_toml_str(&file, &text).map_err(|e| pinpoint_unknown_key(&file, &text, e))?;
    if let Some(seed) = overrides.seed {
        scenario.seed = Some(seed);
    }
    if let Some(duration) = overrides.duration {
        scenario.duration = duration;
    }
    if let Some(version) = &overrides.nats_version
        && scenario.target.kind == "nats"
    {
        scenario.target.version = Some(version.clone());
    }
    let ctx = Ctx { file: &file, text: &text };
    validate(&ctx, &scenario)?;
    if let Some(target) = target {
        assert_eq!(target.kind(), scenario.target.kind, "the target matches the scenario");
        target.validate(&scenario).map_err(|(message, fix)| {
            let line = ctx.line_of_message(&message);
            ScenarioError::Invalid { file: file.clone(), line, message, fix }
        })?;
    }
    let seed = scenario.seed.unwrap_or_else(seed_if_unset);
    scenario.seed = Some(seed);
    check_seed(&ctx, seed)?;
    scenario.format_version = Some(FORMAT_VERSION);
    if scenario.stream.consistency.is_none() {
        scenario.stream.consistency = Some(Mode::Strong);
    }
    for fault in &mut scenario.faults {
        fault.heal_after.get_or_insert(HEAL_AFTER_DEFAULT);
    }
    Ok(Resolved { path: path.to_path_buf(), scenario, seed })
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn invalid(&self, line: Option<usize>, message: impl Into<String>, fix: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid { file: self.file.to_string(), line, message: message.into(), fix: fix.into() }
    }

    /// The 1-based line of `key` inside table `table` (`""` for the top
    /// level, `"faults"` with `index` for the index-th `[[faults]]`).
    fn line(&self, table: &str, index: Option<usize>, key: &str) -> Option<usize> {
        find_key_line(self.text, table, index, key)
    }

    /// Target messages name their key (e.g. "stream.replicas"); find its line.
    fn line_of_message(&self, message: &str) -> Option<usize> {
        for (table, key) in [
            ("stream", "consistency"),
            ("stream", "replicas"),
            ("stream", "sync"),
            ("target", "bug"),
            ("target", "version"),
            ("", "nodes"),
        ] {
            let dotted = if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
            if message.contains(&dotted) || (table.is_empty() && message.contains(key)) {
                return self.line(table, None, key);
            }
        }
        if message.contains("async") {
            return self.line("stream", None, "consistency");
        }
        if message.contains("bug") {
            return self.line("target", None, "bug");
        }
        None
    }
}

/// Finds the line of `key = ...` inside `[table]` (or the `index`-th
/// `[[table]]`), by scanning the text: enough for the flat files scenarios
/// are. `None` when the key is not written there (e.g. a default).
pub fn find_key_line(text: &str, table: &str, index: Option<usize>, key: &str) -> Option<usize> {
    let mut current = String::new();
    let mut array_seen: usize = 0;
    let mut current_index: Option<usize> = None;
    let mut header_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            current = name.trim().to_string();
            if current == table {
                current_index = Some(array_seen);
                array_seen += 1;
                if current_index == index {
                    header_line = Some(i + 1);
                }
            } else {
                current_index = None;
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = name.trim().to_string();
            current_index = None;
            if current == table && index.is_none() {
                header_line = Some(i + 1);
            }
            continue;
        }
        if current == table && current_index == index {
            let Some((k, _)) = line.split_once('=') else { continue };
            let k = k.trim().trim_matches('"');
            if k == key {
                return Some(i + 1);
            }
        }
    }
    // Not written: point at the table it belongs in, if any.
    header_line
}

/// serde reports an unknown key inside a `[[faults]]` table at the table's
/// header (the fault's options are flattened); point at the key itself and
/// say what to do.
fn pinpoint_unknown_key(file: &str, text: &str, e: ScenarioError) -> ScenarioError {
    let ScenarioError::Parse { message, .. } = &e else { return e };
    let Some(key) = message.split("unknown field `").nth(1).and_then(|rest| rest.split('`').next()) else {
        return e;
    };
    let from_line: usize = message
        .split("at line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let line = text.lines().enumerate().skip(from_line.saturating_sub(1)).find_map(|(i, l)| {
        let k = l.split_once('=')?.0.trim().trim_matches('"');
        (k == key).then_some(i + 1)
    });
    let expected = message.split("expected ").nth(1).map(|rest| rest.lines().next().unwrap_or("").trim().to_string());
    let fix = match expected {
        Some(list) if !list.is_empty() => format!("remove {key:?} or correct its spelling (expected {list})"),
        _ => format!("remove {key:?} or correct its spelling (see docs/scenarios.md)"),
    };
    ScenarioError::Invalid { file: file.to_string(), line, message: format!("unknown key {key:?}"), fix }
}

fn check_seed(ctx: &Ctx, seed: u64) -> Result<(), ScenarioError> {
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

fn validate(ctx: &Ctx, s: &Scenario) -> Result<(), ScenarioError> {
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

fn validate_fault(ctx: &Ctx, s: &Scenario, i: usize, f: &Fault) -> Result<(), ScenarioError> {
    let line = |key| ctx.line("faults", Some(i), key);
    let which = format!("faults[{i}] ({})", f.kind);
    if !FAULT_KINDS_SUPPORTED.contains(&f.kind.as_str()) {
        return Err(ctx.invalid(
            line("kind"),
            format!("unknown fault kind {:?}", f.kind),
            format!("use one of: {}", FAULT_KINDS_SUPPORTED.join(", ")),
        ));
    }
    let allowed: &[&str] = match f.kind.as_str() {
        "power-loss" => &["discard", "keep_fraction", "writeback_after"],
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
                "add every = \"5s\" or at = [\"3s\"]",
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
    if f.heal_after.is_some_and(|h| h.is_zero()) {
        return Err(ctx.invalid(
            line("heal_after"),
            format!("{which}: heal_after = \"0s\""),
            "set a positive heal_after (how long the fault lasts)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_in_tables_and_arrays_of_tables() {
        let text = "name = \"x\"\nnodes = 3\n[stream]\nreplicas = 3\n[[faults]]\nkind = \"kill\"\n[[faults]]\nkind = \"pause\"\nevery = \"1s\"\n";
        assert_eq!(find_key_line(text, "", None, "nodes"), Some(2));
        assert_eq!(find_key_line(text, "stream", None, "replicas"), Some(4));
        assert_eq!(find_key_line(text, "faults", Some(1), "kind"), Some(8));
        assert_eq!(find_key_line(text, "faults", Some(1), "every"), Some(9));
        // Not written: the header of its table.
        assert_eq!(find_key_line(text, "faults", Some(0), "every"), Some(5));
        assert_eq!(find_key_line(text, "workload", None, "rate"), None);
    }

    #[test]
    fn nats_version_override_replaces_nats_targets_only() {
        let dir = std::env::temp_dir().join(format!("jetsam-nats-version-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let nats = dir.join("nats.toml");
        let node = dir.join("node.toml");
        let common = "nodes = 3\nduration = \"5s\"\n[stream]\nreplicas = 3\n";
        std::fs::write(&nats, format!("name = \"n\"\n{common}[target]\nkind = \"nats\"\nversion = \"2.12.1\"\n"))
            .unwrap();
        std::fs::write(&node, format!("name = \"m\"\n{common}")).unwrap();
        let overrides = Overrides { nats_version: Some("2.15.1".into()), ..Overrides::default() };
        let loaded = load(&nats, &overrides, None, || 7).unwrap();
        assert_eq!(loaded.scenario.target.version.as_deref(), Some("2.15.1"));
        assert!(loaded.to_toml().contains("version = \"2.15.1\""), "the resolved file replays the overridden version");
        let kept = load(&nats, &Overrides::default(), None, || 7).unwrap();
        assert_eq!(kept.scenario.target.version.as_deref(), Some("2.12.1"));
        let other = load(&node, &overrides, None, || 7).unwrap();
        assert_eq!(other.scenario.target.kind, "node");
        assert_eq!(other.scenario.target.version, None, "a node scenario gets no NATS version");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
