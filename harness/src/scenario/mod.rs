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
use jetsam_core::report::Mode;
use jetsam_core::scenario::{Fault, Scenario, ScenarioError, Targets};
use jetsam_targets::Target;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod validate;
use validate::{check_seed, validate, validate_triggers_seen};

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
/// Fault kinds whose nodes `restart = false` may keep down to the end of the
/// run: the ones that stop a node. A pause or io-error leaves it running, and
/// a bitflip or truncate exists to see what the restart does with its files.
pub const KEEP_DOWN_KINDS: &[&str] = &["kill", "power-loss"];

/// Whether a fault line keeps its nodes down: `restart = false` (validated
/// to appear only on [`KEEP_DOWN_KINDS`]). Its heal and the final heal then
/// leave them stopped, and read-back reads them offline or marks them
/// unreadable (docs/scenarios.md).
pub fn keeps_down(fault: &Fault) -> bool {
    fault.options.get("restart").and_then(|v| v.as_bool()) == Some(false)
}

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
    /// `--audit`: turns `check.audit` on.
    pub audit: bool,
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
    if overrides.audit {
        scenario.check.audit = true;
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
        validate_triggers_seen(&ctx, &scenario, target)?;
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
    fn restart_false_is_accepted_on_kill_and_power_loss_and_survives_the_resolved_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keep.toml");
        let text = "name = \"k\"\nnodes = 3\nduration = \"5s\"\n[stream]\nreplicas = 3\n\
                    [[faults]]\nkind = \"power-loss\"\ntargets = [\"n1\"]\nat = [\"2s\"]\nrestart = false\n\
                    [[faults]]\nkind = \"kill\"\nat = [\"3s\"]\nrestart = true\n";
        std::fs::write(&file, text).unwrap();
        let loaded = load(&file, &Overrides::default(), None, || 7).unwrap();
        assert!(keeps_down(&loaded.scenario.faults[0]));
        assert!(!keeps_down(&loaded.scenario.faults[1]), "restart = true is the default behaviour");
        let resolved = loaded.to_toml();
        let again = Scenario::from_toml_str("resolved", &resolved).unwrap();
        assert_eq!(again.faults, loaded.scenario.faults, "the resolved file replays restart as written");
        assert!(keeps_down(&again.faults[0]));
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
