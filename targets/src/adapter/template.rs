//! The templates of a target file (docs/adapter-protocol.md, "Templates"):
//! `{name}` placeholders, `{{` and `}}` for literal braces, and one node's
//! command line, environment and config files rendered from them.

use super::spec::{LoadedTarget, PeerPort};
use jetsam_core::duration::parse_duration;
use jetsam_core::report::Mode;
use std::collections::BTreeMap;

/// A template that does not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed \"{{\" at byte {at}")]
    Unclosed { at: usize },
    #[error("a lone \"}}\" at byte {at} (write \"}}}}\" for a literal brace)")]
    LoneClose { at: usize },
    #[error("unknown placeholder {{{name}}}")]
    Unknown { name: String },
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    /// A literal `{` or `}` written doubled.
    Brace(char),
    Var(&'a str),
}

fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let bytes = template.as_bytes();
    let mut pieces = Vec::new();
    let (mut i, mut text_start) = (0, 0);
    while i < bytes.len() {
        let c = bytes[i];
        if c != b'{' && c != b'}' {
            i += 1;
            continue;
        }
        if text_start < i {
            pieces.push(Piece::Text(&template[text_start..i]));
        }
        if bytes.get(i + 1) == Some(&c) {
            pieces.push(Piece::Brace(c as char));
            i += 2;
        } else if c == b'}' {
            return Err(TemplateError::LoneClose { at: i });
        } else {
            let end = template[i + 1..].find(['}', '{', '\n']).map(|e| e + i + 1);
            match end {
                Some(e) if bytes[e] == b'}' => {
                    pieces.push(Piece::Var(&template[i + 1..e]));
                    i = e + 1;
                }
                _ => return Err(TemplateError::Unclosed { at: i }),
            }
        }
        text_start = i;
    }
    if text_start < bytes.len() {
        pieces.push(Piece::Text(&template[text_start..]));
    }
    Ok(pieces)
}

/// Renders `template`, asking `value` for each placeholder (`None` =
/// unknown, an error naming it).
pub fn render(template: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    for piece in parse_template(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Brace(c) => out.push(c),
            Piece::Var(name) => {
                out.push_str(&value(name).ok_or_else(|| TemplateError::Unknown { name: name.to_string() })?)
            }
        }
    }
    Ok(out)
}

/// The placeholders `template` uses, in order of first use.
pub fn placeholders(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut seen = Vec::new();
    for piece in parse_template(template)? {
        if let Piece::Var(name) = piece
            && !seen.iter().any(|s| s == name)
        {
            seen.push(name.to_string());
        }
    }
    Ok(seen)
}

/// One node's command line, init command, environment and config files,
/// with every placeholder filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedNode {
    pub command: Vec<String>,
    /// Empty when the target file has no `node.init`.
    pub init: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// (path inside the conf dir, contents).
    pub files: Vec<(String, String)>,
}

/// What the stream settings give the templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamValues {
    pub nodes: u32,
    pub replicas: u32,
    pub consistency: Mode,
    /// `stream.sync` as written (`None` = unset).
    pub sync: Option<String>,
}

impl LoadedTarget {
    /// Fills in every template of one node. `values` are the matched mode's
    /// and the settings' placeholders ([`LoadedTarget::defined_values`]).
    pub fn render_node(
        &self,
        node: &crate::NodeSpec,
        stream: &StreamValues,
        values: &BTreeMap<String, String>,
    ) -> Result<RenderedNode, TemplateError> {
        let sync_ms = match stream.sync.as_deref() {
            None | Some("always") => 0,
            Some(s) => parse_duration(s).map(|d| d.as_millis()).unwrap_or(0),
        };
        let index = node.name.trim_start_matches('n').to_string();
        let peer_port = match self.file.node.peer_port {
            PeerPort::Own => node.peer_listen_addr.port(),
            PeerPort::Client => node.client_addr.port(),
        };
        let peers: Vec<String> = node.peers.iter().map(|(n, a)| format!("{n}={a}")).collect();
        let data_root = node.data_dir.parent().map(|p| p.display().to_string()).unwrap_or_default();
        let builtin = |name: &str| -> Option<String> {
            Some(match name {
                "name" => node.name.clone(),
                "index" => index.clone(),
                "nodes" => stream.nodes.to_string(),
                "data_dir" => node.data_dir.display().to_string(),
                "conf_dir" => node.conf_dir.display().to_string(),
                "data_root" => data_root.clone(),
                "target_dir" => self.dir.display().to_string(),
                "host" => node.client_addr.ip().to_string(),
                "client_port" => node.client_addr.port().to_string(),
                "peer_port" => peer_port.to_string(),
                "peers" => peers.join(","),
                "replicas" => stream.replicas.to_string(),
                "consistency" => stream.consistency.to_string(),
                "sync" => stream.sync.clone().unwrap_or_else(|| "default".into()),
                "sync_ms" => sync_ms.to_string(),
                other => {
                    if let Some(peer) = other.strip_prefix("peer:") {
                        node.peers.get(peer)?.to_string()
                    } else if let Some(peer) = other.strip_prefix("peer_port:") {
                        node.peers.get(peer)?.port().to_string()
                    } else {
                        return None;
                    }
                }
            })
        };
        // A mode's set values may use the built-in placeholders (checked at load).
        let mut defined = BTreeMap::new();
        for (key, template) in values {
            defined.insert(key.as_str(), render(template, &builtin)?);
        }
        let value = |name: &str| defined.get(name).cloned().or_else(|| builtin(name));
        let all = |templates: &[String]| templates.iter().map(|t| render(t, &value)).collect::<Result<Vec<_>, _>>();
        let n = &self.file.node;
        let mut env = BTreeMap::new();
        for (key, template) in &n.env {
            env.insert(key.clone(), render(template, &value)?);
        }
        let mut files = Vec::with_capacity(n.files.len());
        for (f, text) in n.files.iter().zip(&self.templates) {
            files.push((render(&f.path, &value)?, render(text, &value)?));
        }
        Ok(RenderedNode { command: all(&n.command)?, init: all(&n.init)?, env, files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::spec::tests::{GOOD, write_target};

    fn vars(name: &str) -> Option<String> {
        match name {
            "name" => Some("n1".into()),
            "peer:n2" => Some("127.0.0.1:9".into()),
            _ => None,
        }
    }

    #[test]
    fn renders_placeholders_and_literal_braces() {
        assert_eq!(render("node {name} -> {peer:n2}", &vars).unwrap(), "node n1 -> 127.0.0.1:9");
        assert_eq!(render("{{x}} {name}}}", &vars).unwrap(), "{x} n1}");
        assert_eq!(render("", &vars).unwrap(), "");
        assert_eq!(render("{nope}", &vars), Err(TemplateError::Unknown { name: "nope".into() }));
        assert_eq!(render("a {name", &vars), Err(TemplateError::Unclosed { at: 2 }));
        assert_eq!(render("a } b", &vars), Err(TemplateError::LoneClose { at: 2 }));
        assert_eq!(placeholders("{a} {b} {a} {{c}}").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn a_node_renders_with_its_addresses_mode_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_target(dir.path(), GOOD, "port {client_port}\nlog {log}\nfsync {fsync}\npeers {peers}\n");
        let t = LoadedTarget::load(&path).unwrap();
        let node = crate::NodeSpec {
            name: "n1".into(),
            data_dir: "/r/data/n1".into(),
            conf_dir: "/r/conf/n1".into(),
            client_addr: "127.0.0.1:7001".parse().unwrap(),
            peer_listen_addr: "127.0.0.1:7002".parse().unwrap(),
            peers: BTreeMap::from([("n2".to_string(), "127.0.0.1:7102".parse().unwrap())]),
            monitor_addr: "127.0.0.1:7003".parse().unwrap(),
            dead_addr: "127.0.0.1:7004".parse().unwrap(),
        };
        let stream = StreamValues { nodes: 2, replicas: 2, consistency: Mode::Async, sync: Some("250ms".into()) };
        let mode = t.mode_for(Mode::Async, Some("250ms")).unwrap();
        let values = t.defined_values(mode, &t.settings_for(&BTreeMap::new()).unwrap());
        let r = t.render_node(&node, &stream, &values).unwrap();
        assert_eq!(
            r.command,
            ["kv-server", "--port", "7001", "--conf", "/r/conf/n1/kv.conf", "--peer", "127.0.0.1:7102"]
        );
        assert_eq!(r.env["KV_FSYNC"], "every 250", "a set value's own placeholders are filled in");
        assert!(r.init.is_empty());
        assert_eq!(
            r.files,
            vec![("kv.conf".to_string(), "port 7001\nlog yes\nfsync every 250\npeers n2=127.0.0.1:7102\n".to_string())]
        );
        // A peer the node does not have (n3 of a 2-node cluster) is an error, not an empty string.
        let three = write_target(dir.path(), &GOOD.replace("{peer:n2}", "{peer:n3}"), "x");
        let t3 = LoadedTarget::load(&three).unwrap();
        assert_eq!(t3.render_node(&node, &stream, &values), Err(TemplateError::Unknown { name: "peer:n3".into() }));
    }
}
