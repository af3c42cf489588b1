//! The target file of an adapter target (docs/adapter-protocol.md, "The
//! target file"): how to start one node of a system jetsam was not built
//! for, which (consistency, sync) pairs it accepts and what each sets, the
//! system's own knobs (`settings`), and the templates that turn all of it
//! into a command line and config files.
//!
//! Everything here is checked when the file is loaded, so a broken target
//! file is refused (exit 2) before any node starts: unknown keys, a missing
//! template file, a placeholder no one defines, a setting whose default is
//! not one of its values. This module starts nothing.

use jetsam_core::duration::parse_duration;
use jetsam_core::report::Mode;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::template::placeholders;

/// The newest version of docs/adapter-protocol.md this code speaks.
/// Version 2 added the optional `failover` op (declared in hello's reply).
pub const PROTOCOL_VERSION: u32 = 2;
/// The versions a target file may declare: a version 1 adapter (no
/// `failover`) runs unchanged; its hello says `"protocol": 1`.
pub const PROTOCOL_VERSIONS: &[u32] = &[1, 2];
/// The first version with the `failover` op.
pub const PROTOCOL_FAILOVER: u32 = 2;
/// Most nodes a target file may allow (the scenario's own limit).
pub const NODES_MAX: u32 = 15;
/// Largest template file read (a config file, not data).
pub const TEMPLATE_BYTES_MAX: u64 = 1 << 20;

/// Placeholders every template may use, besides `peer:NAME`,
/// `peer_port:NAME`, the matched mode's `set` keys and the settings' keys.
pub const BUILTIN_PLACEHOLDERS: &[&str] = &[
    "name",
    "index",
    "nodes",
    "data_dir",
    "conf_dir",
    "data_root",
    "target_dir",
    "host",
    "client_port",
    "peer_port",
    "peers",
    "replicas",
    "consistency",
    "sync",
    "sync_ms",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    pub protocol: u32,
    /// Names the adapter in every error.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The adapter program and its arguments, run with the target file's folder as working directory.
    pub adapter: Vec<String>,
    #[serde(default)]
    pub read_back: ReadBackSpec,
    /// Default files for bitflip/truncate, relative to the data dir.
    #[serde(default)]
    pub corrupt_globs: Vec<String>,
    #[serde(default = "one")]
    pub nodes_min: u32,
    #[serde(default = "nodes_max_default")]
    pub nodes_max: u32,
    #[serde(default)]
    pub replicas: ReplicasRule,
    pub node: NodeSection,
    pub modes: Vec<ModeSpec>,
    #[serde(default)]
    pub settings: BTreeMap<String, SettingSpec>,
}

fn one() -> u32 {
    1
}

fn nodes_max_default() -> u32 {
    NODES_MAX
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadBackSpec {
    /// Each node is read while it runs.
    #[default]
    Live,
    /// Each node is read after a clean stop (from its files).
    AfterStop,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicasRule {
    /// `stream.replicas` must equal `nodes`: every node holds a full copy.
    #[default]
    Nodes,
    /// Any `stream.replicas` from 1 to `nodes`.
    Any,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerPort {
    /// Peers connect to the node's own peer port.
    #[default]
    Own,
    /// The system listens on one port for clients and peers alike (PostgreSQL, Redis).
    Client,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub command: Vec<String>,
    #[serde(default)]
    pub init: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub peer_port: PeerPort,
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Where the rendered file goes, relative to the node's conf dir.
    pub path: String,
    /// The template, relative to the target file's folder.
    pub template: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeSpec {
    pub consistency: Mode,
    /// `always`, `default`, `interval` or an exact interval such as `1s`.
    pub sync: String,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingSpec {
    pub default: String,
    /// Each value's placeholders.
    pub values: BTreeMap<String, BTreeMap<String, String>>,
}

/// How a mode entry's `sync` matches a scenario's `stream.sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMatch {
    Always,
    /// `stream.sync` unset.
    Default,
    /// Any interval.
    Interval,
    Exactly(Duration),
}

impl SyncMatch {
    pub fn parse(text: &str) -> Result<SyncMatch, String> {
        match text {
            "always" => Ok(SyncMatch::Always),
            "default" => Ok(SyncMatch::Default),
            "interval" => Ok(SyncMatch::Interval),
            other => match parse_duration(other) {
                Ok(d) if !d.is_zero() => Ok(SyncMatch::Exactly(d)),
                _ => Err(format!("sync = {other:?} is not \"always\", \"default\", \"interval\" or an interval")),
            },
        }
    }

    /// Whether a scenario's `stream.sync` (already validated) falls under this entry.
    pub fn matches(&self, sync: Option<&str>) -> bool {
        match (self, sync) {
            (SyncMatch::Default, None) => true,
            (SyncMatch::Always, Some("always")) => true,
            (SyncMatch::Interval, Some(s)) => s != "always",
            (SyncMatch::Exactly(d), Some(s)) => parse_duration(s).is_ok_and(|v| v == *d),
            _ => false,
        }
    }
}

/// A target file that cannot be used. User error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("failed to read target file {}: {source}; check target.file", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse target file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid target file {}: {message}; fix: {fix}", path.display())]
    Invalid { path: PathBuf, message: String, fix: String },
}

/// A loaded, checked target file with its templates read.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedTarget {
    /// The target file (as given).
    pub path: PathBuf,
    /// Its folder, absolute: the adapter's working directory and `{target_dir}`.
    pub dir: PathBuf,
    pub file: TargetFile,
    /// `node.files[i].template`'s text, by index.
    pub templates: Vec<String>,
}

impl LoadedTarget {
    /// Reads and checks a target file and its templates.
    pub fn load(path: &Path) -> Result<LoadedTarget, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.into(), source })?;
        let file: TargetFile =
            toml::from_str(&text).map_err(|e| SpecError::Parse { path: path.into(), message: e.to_string() })?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(parent).map_err(|source| SpecError::Read { path: parent.into(), source })?;
        let invalid = |message: String, fix: &str| SpecError::Invalid { path: path.into(), message, fix: fix.into() };
        check_file(&file).map_err(|(m, f)| invalid(m, &f))?;
        let mut templates = Vec::with_capacity(file.node.files.len());
        for f in &file.node.files {
            let tpath = dir.join(&f.template);
            let size = std::fs::metadata(&tpath).map(|m| m.len()).map_err(|e| {
                invalid(format!("node.files template {:?}: {e}", f.template), "give a path relative to the target file")
            })?;
            if size > TEMPLATE_BYTES_MAX {
                return Err(invalid(
                    format!("node.files template {:?} is {size} bytes", f.template),
                    "keep config templates under 1 MiB",
                ));
            }
            let text = std::fs::read_to_string(&tpath)
                .map_err(|e| invalid(format!("node.files template {:?}: {e}", f.template), "save it as UTF-8"))?;
            templates.push(text);
        }
        let loaded = LoadedTarget { path: path.into(), dir, file, templates };
        loaded.check_placeholders().map_err(|(m, f)| invalid(m, &f))?;
        Ok(loaded)
    }

    /// Every template uses only placeholders someone defines.
    fn check_placeholders(&self) -> Result<(), (String, String)> {
        let known = self.defined_names();
        let node = &self.file.node;
        let mut all: Vec<(String, &str)> = Vec::new();
        all.extend(node.command.iter().map(|t| ("node.command".to_string(), t.as_str())));
        all.extend(node.init.iter().map(|t| ("node.init".to_string(), t.as_str())));
        all.extend(node.env.iter().map(|(k, t)| (format!("node.env.{k}"), t.as_str())));
        all.extend(node.files.iter().map(|f| (format!("node.files path {:?}", f.path), f.path.as_str())));
        all.extend(
            node.files.iter().zip(&self.templates).map(|(f, t)| (format!("template {:?}", f.template), t.as_str())),
        );
        // A mode's set values may use the built-in placeholders (e.g. "{sync_ms}ms").
        let builtins: BTreeSet<&str> = BUILTIN_PLACEHOLDERS.iter().copied().collect();
        for (i, m) in self.file.modes.iter().enumerate() {
            for (key, value) in &m.set {
                let names = placeholders(value).map_err(|e| (format!("modes[{i}].set.{key}: {e}"), "fix it".into()))?;
                if let Some(name) = names.iter().find(|n| !builtins.contains(n.as_str())) {
                    return Err((
                        format!("modes[{i}].set.{key}: unknown placeholder {{{name}}}"),
                        format!("a set value may use only {{{}}}", BUILTIN_PLACEHOLDERS.join("}, {")),
                    ));
                }
            }
        }
        for (where_, template) in all {
            let names = placeholders(template).map_err(|e| (format!("{where_}: {e}"), "fix the template".into()))?;
            for name in names {
                let per_peer = name.strip_prefix("peer:").or_else(|| name.strip_prefix("peer_port:"));
                let ok = match per_peer {
                    Some(peer) => is_node_name(peer),
                    None => known.contains(name.as_str()),
                };
                if !ok {
                    return Err((
                        format!("{where_}: unknown placeholder {{{name}}}"),
                        format!(
                            "use one of {{{}}}, {{peer:nN}}, {{peer_port:nN}}, a key of a [[modes]] set or of a setting's values, or write {{{{ for a literal brace",
                            BUILTIN_PLACEHOLDERS.join("}, {")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Placeholder names defined by the builtins, the modes and the settings.
    fn defined_names(&self) -> BTreeSet<&str> {
        let mut names: BTreeSet<&str> = BUILTIN_PLACEHOLDERS.iter().copied().collect();
        for m in &self.file.modes {
            names.extend(m.set.keys().map(String::as_str));
        }
        for s in self.file.settings.values() {
            names.extend(s.values.values().flat_map(|v| v.keys().map(String::as_str)));
        }
        names
    }

    /// The `[[modes]]` entry of a scenario's consistency and sync, or why none fits.
    pub fn mode_for(&self, consistency: Mode, sync: Option<&str>) -> Result<&ModeSpec, (String, String)> {
        self.file
            .modes
            .iter()
            .find(|m| m.consistency == consistency && SyncMatch::parse(&m.sync).is_ok_and(|s| s.matches(sync)))
            .ok_or_else(|| {
                let accepted: Vec<String> =
                    self.file.modes.iter().map(|m| format!("{} + sync {}", m.consistency, m.sync)).collect();
                (
                    format!(
                        "stream.consistency = \"{consistency}\" with stream.sync = {} is not a mode of target {:?}",
                        sync.map(|s| format!("{s:?}")).unwrap_or_else(|| "unset".into()),
                        self.file.name
                    ),
                    format!("use one of: {} (sync \"default\" means stream.sync unset)", accepted.join("; ")),
                )
            })
    }

    /// The scenario's settings with every default filled in, or why one is refused.
    pub fn settings_for(&self, given: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, (String, String)> {
        if let Some(key) = given.keys().find(|k| !self.file.settings.contains_key(*k)) {
            let known: Vec<&str> = self.file.settings.keys().map(String::as_str).collect();
            return Err((
                format!("target.settings.{key} is not a setting of target {:?}", self.file.name),
                if known.is_empty() {
                    "remove target.settings: this target has none".into()
                } else {
                    format!("use one of: {}", known.join(", "))
                },
            ));
        }
        let mut out = BTreeMap::new();
        for (key, spec) in &self.file.settings {
            let value = given.get(key).unwrap_or(&spec.default);
            if !spec.values.contains_key(value) {
                let values: Vec<&str> = spec.values.keys().map(String::as_str).collect();
                return Err((
                    format!("target.settings.{key} = {value:?} is not a value of this setting"),
                    format!("use one of: {}", values.join(", ")),
                ));
            }
            out.insert(key.clone(), value.clone());
        }
        Ok(out)
    }

    /// The target's rules on nodes and replicas.
    pub fn check_shape(&self, nodes: u32, replicas: u32) -> Result<(), (String, String)> {
        let f = &self.file;
        if !(f.nodes_min..=f.nodes_max).contains(&nodes) {
            return Err((
                format!("nodes = {nodes} is outside what target {:?} runs", f.name),
                format!("set nodes between {} and {}", f.nodes_min, f.nodes_max),
            ));
        }
        if f.replicas == ReplicasRule::Nodes && replicas != nodes {
            return Err((
                format!(
                    "stream.replicas = {replicas} with {nodes} nodes: target {:?} keeps a copy on every node",
                    f.name
                ),
                "set stream.replicas = nodes".into(),
            ));
        }
        Ok(())
    }

    /// The placeholders of one mode and the chosen settings (mode keys and
    /// setting keys never collide: checked at load).
    pub fn defined_values(&self, mode: &ModeSpec, settings: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out = mode.set.clone();
        for (key, value) in settings {
            if let Some(vars) = self.file.settings.get(key).and_then(|s| s.values.get(value)) {
                out.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
    }
}

/// `n1` .. `n15`.
fn is_node_name(name: &str) -> bool {
    name.strip_prefix('n').and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| (1..=NODES_MAX).contains(&n))
}

/// Rules of the file on its own (no templates read yet).
fn check_file(f: &TargetFile) -> Result<(), (String, String)> {
    let err = |m: String, fix: &str| Err((m, fix.to_string()));
    if !PROTOCOL_VERSIONS.contains(&f.protocol) {
        return err(
            format!("protocol = {} is not 1 or {PROTOCOL_VERSION}", f.protocol),
            "write the target file and adapter for docs/adapter-protocol.md version 2 (version 1 is still accepted)",
        );
    }
    if !jetsam_core::scenario::is_plain_name(&f.name) {
        return err(format!("name {:?} is not a plain name", f.name), "use letters, digits, '-', '_' and '.'");
    }
    if f.adapter.is_empty() || f.adapter[0].is_empty() {
        return err(
            "adapter is empty".into(),
            "give the adapter program, e.g. adapter = [\"python3\", \"adapter.py\"]",
        );
    }
    if f.node.command.is_empty() || f.node.command[0].is_empty() {
        return err("node.command is empty".into(), "give the node's program and arguments");
    }
    if !(1..=f.nodes_max).contains(&f.nodes_min) || f.nodes_max > NODES_MAX {
        return err(
            format!("nodes_min = {} and nodes_max = {}", f.nodes_min, f.nodes_max),
            "set 1 <= nodes_min <= nodes_max <= 15",
        );
    }
    if f.modes.is_empty() {
        return err("no [[modes]]".into(), "add at least one [[modes]] entry with consistency, sync and set");
    }
    let mut set_keys: BTreeSet<&str> = BTreeSet::new();
    for (i, m) in f.modes.iter().enumerate() {
        if let Err(e) = SyncMatch::parse(&m.sync) {
            return err(
                format!("modes[{i}]: {e}"),
                "write sync = \"always\", \"default\", \"interval\" or e.g. \"1s\"",
            );
        }
        set_keys.extend(m.set.keys().map(String::as_str));
    }
    for (name, s) in &f.settings {
        if !s.values.contains_key(&s.default) {
            return err(
                format!("settings.{name}: default {:?} is not one of its values", s.default),
                "add it to values or pick one of them as default",
            );
        }
        for key in s.values.values().flat_map(|v| v.keys()) {
            if set_keys.contains(key.as_str()) {
                return err(
                    format!("settings.{name} defines {key:?}, which a [[modes]] set defines too"),
                    "give the setting and the mode different placeholder names",
                );
            }
        }
    }
    for key in set_keys
        .iter()
        .copied()
        .chain(f.settings.values().flat_map(|s| s.values.values()).flat_map(|v| v.keys().map(String::as_str)))
    {
        if BUILTIN_PLACEHOLDERS.contains(&key) || key.contains([':', '{', '}']) {
            return err(format!("placeholder {key:?} is built in or not a plain name"), "rename it");
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn sync_entries_match_the_scenario_sync() {
        let p = |s| SyncMatch::parse(s).unwrap();
        assert!(p("always").matches(Some("always")));
        assert!(!p("always").matches(None));
        assert!(p("default").matches(None));
        assert!(p("interval").matches(Some("200ms")));
        assert!(!p("interval").matches(Some("always")));
        assert!(p("1s").matches(Some("1000ms")));
        assert!(!p("1s").matches(Some("2s")));
        assert!(SyncMatch::parse("0s").is_err());
        assert!(SyncMatch::parse("sometimes").is_err());
    }

    pub(crate) const GOOD: &str = r#"
protocol = 1
name = "kv"
adapter = ["python3", "adapter.py"]
corrupt_globs = ["*.log"]
nodes_max = 3

[node]
command = ["kv-server", "--port", "{client_port}", "--conf", "{conf_dir}/kv.conf", "--peer", "{peer:n2}"]
env = { KV_FSYNC = "{fsync}" }
files = [ { path = "kv.conf", template = "kv.conf.in" } ]

[[modes]]
consistency = "strong"
sync = "always"
set = { fsync = "always" }

[[modes]]
consistency = "async"
sync = "interval"
set = { fsync = "every {sync_ms}" }

[settings.log]
default = "on"
values.on = { log = "yes" }
values.off = { log = "no" }
"#;

    pub(crate) fn write_target(dir: &Path, text: &str, template: &str) -> PathBuf {
        std::fs::write(dir.join("kv.conf.in"), template).unwrap();
        let path = dir.join("target.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_good_file_loads_and_answers_modes_settings_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_target(dir.path(), GOOD, "port {client_port}\nlog {log}\n{{literal}}\n");
        let t = LoadedTarget::load(&path).unwrap();
        assert_eq!(t.templates.len(), 1);
        assert_eq!(t.mode_for(Mode::Strong, Some("always")).unwrap().set["fsync"], "always");
        assert_eq!(t.mode_for(Mode::Async, Some("200ms")).unwrap().sync, "interval");
        let (message, fix) = t.mode_for(Mode::Strong, None).unwrap_err();
        assert!(message.contains("unset") && message.contains("\"kv\""), "{message}");
        assert!(fix.contains("strong + sync always; async + sync interval"), "{fix}");
        let settings = t.settings_for(&BTreeMap::new()).unwrap();
        assert_eq!(settings["log"], "on");
        let mode = t.mode_for(Mode::Strong, Some("always")).unwrap();
        let values = t.defined_values(mode, &settings);
        assert_eq!(values["log"], "yes");
        assert_eq!(values["fsync"], "always");
        let off = BTreeMap::from([("log".to_string(), "off".to_string())]);
        assert_eq!(t.defined_values(mode, &t.settings_for(&off).unwrap())["log"], "no");
        let bad = BTreeMap::from([("log".to_string(), "maybe".to_string())]);
        assert!(t.settings_for(&bad).unwrap_err().1.contains("off, on"));
        let unknown = BTreeMap::from([("fsink".to_string(), "on".to_string())]);
        assert!(t.settings_for(&unknown).unwrap_err().0.contains("target.settings.fsink"));
        assert!(t.check_shape(3, 3).is_ok());
        assert!(t.check_shape(4, 4).unwrap_err().1.contains("between 1 and 3"));
        assert!(t.check_shape(3, 1).unwrap_err().0.contains("stream.replicas = 1"));
    }

    #[test]
    fn broken_files_are_refused_with_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &str, &str)] = &[
            (&GOOD.replace("protocol = 1", "protocol = 3"), "ok", "protocol = 3 is not 1 or 2"),
            (&GOOD.replace("corrupt_globs", "corupt_globs"), "ok", "unknown field `corupt_globs`"),
            (
                &GOOD.replace("{client_port}\", \"--conf", "{clientport}\", \"--conf"),
                "ok",
                "unknown placeholder {clientport}",
            ),
            (GOOD, "port {prot}", "template \"kv.conf.in\": unknown placeholder {prot}"),
            (GOOD, "port {client_port", "unclosed"),
            (&GOOD.replace("default = \"on\"", "default = \"auto\""), "ok", "default \"auto\""),
            (&GOOD.replace("{ log = \"no\" }", "{ fsync = \"no\" }"), "ok", "a [[modes]] set defines too"),
            (&GOOD.replace("sync = \"interval\"", "sync = \"often\""), "ok", "modes[1]"),
            (&GOOD.replace("nodes_max = 3", "nodes_max = 16"), "ok", "nodes_max = 16"),
            (&GOOD.replace("{peer:n2}", "{peer:primary}"), "ok", "{peer:primary}"),
            (&GOOD.replace("kv.conf.in", "missing.in"), "ok", "missing.in"),
            (&GOOD.replace("every {sync_ms}", "every {log}"), "ok", "modes[1].set.fsync: unknown placeholder {log}"),
        ];
        for (text, template, expected) in cases {
            let path = write_target(dir.path(), text, template);
            let e = LoadedTarget::load(&path).unwrap_err().to_string();
            assert!(e.contains(expected), "expected {expected:?} in: {e}");
            assert!(e.contains("target.toml"), "the error names the file: {e}");
        }
    }

    #[test]
    fn the_shipped_redis_target_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("redis/target.toml");
        let t = LoadedTarget::load(&path).unwrap();
        assert_eq!(t.file.name, "redis");
        assert_eq!(t.mode_for(Mode::Strong, Some("always")).unwrap().set["appendfsync"], "always");
        assert_eq!(t.mode_for(Mode::Async, Some("1s")).unwrap().set["appendfsync"], "everysec");
        assert!(t.mode_for(Mode::Async, Some("2s")).is_err(), "Redis fsyncs every second or always, nothing else");
        let rdb = BTreeMap::from([("persistence".to_string(), "rdb".to_string())]);
        let mode = t.mode_for(Mode::Strong, None).unwrap();
        assert_eq!(t.defined_values(mode, &t.settings_for(&rdb).unwrap())["appendonly"], "no");
        assert!(t.check_shape(3, 3).is_err(), "one server only");
    }

    #[test]
    fn the_shipped_postgres_target_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("postgres/target.toml");
        let t = LoadedTarget::load(&path).unwrap();
        assert_eq!(t.file.node.peer_port, PeerPort::Client);
        assert_eq!(t.mode_for(Mode::Strong, Some("always")).unwrap().set["synchronous_commit"], "on");
        let async_mode = t.mode_for(Mode::Async, Some("200ms")).unwrap();
        assert_eq!(async_mode.set["synchronous_commit"], "off");
        assert_eq!(async_mode.set["wal_writer_delay"], "{sync_ms}ms");
        let off = BTreeMap::from([("fsync".to_string(), "off".to_string())]);
        assert_eq!(t.defined_values(async_mode, &t.settings_for(&off).unwrap())["fsync"], "off");
    }
}
