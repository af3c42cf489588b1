//! What a scenario asks of NATS: the sync setting, the target's own
//! validation, and each node's config file.

use super::*;

/// How `stream.sync` maps onto `jetstream.sync_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSetting {
    /// Unset: nats-server's default (2 minutes).
    ServerDefault,
    /// `"always"`: fsync after every write.
    Always,
    Interval(Duration),
}

/// Parses `stream.sync` as the NATS target understands it.
pub fn sync_setting(sync: Option<&str>) -> Result<SyncSetting, String> {
    match sync {
        None => Ok(SyncSetting::ServerDefault),
        Some("always") => Ok(SyncSetting::Always),
        Some(text) => match parse_duration(text) {
            Ok(d) if d.is_zero() => Err(format!("stream.sync {text:?} is zero")),
            Ok(d) if d.subsec_nanos() % 1_000 != 0 => Err(format!("stream.sync {text:?} is finer than a microsecond")),
            Ok(d) => Ok(SyncSetting::Interval(d)),
            Err(e) => Err(format!("stream.sync {text:?} is neither \"always\" nor a duration: {e}")),
        },
    }
}

/// Checks the scenario against what the NATS target can run, as
/// `(message, fix)`; needs no binary, so the controller may call it first.
pub fn validate_scenario(scenario: &Scenario) -> Result<(), (String, String)> {
    let target = &scenario.target;
    if target.kind != "nats" {
        return Err((format!("target.kind is {:?}, not \"nats\"", target.kind), "set target.kind = \"nats\"".into()));
    }
    match target.version.as_deref() {
        None => {
            return Err((
                "target.version is missing: the NATS target runs a pinned nats-server".into(),
                format!("set target.version, e.g. \"{}\" (installed by {INSTALL_SCRIPT})", DEFAULT_VERSIONS[0]),
            ));
        }
        Some(v) if !is_version(v) => {
            return Err((format!("target.version {v:?} is not a version like 2.12.1"), "set e.g. \"2.12.1\"".into()));
        }
        Some(_) => {}
    }
    if target.bug.is_some() {
        return Err((
            "target.bug is for the reference node only".into(),
            "remove target.bug from a NATS scenario".into(),
        ));
    }
    let stream = &scenario.stream;
    if scenario.nodes == 0 || stream.replicas == 0 {
        return Err((
            "nodes and stream.replicas must be at least 1".into(),
            "set nodes >= stream.replicas >= 1".into(),
        ));
    }
    if stream.replicas > 5 {
        return Err((
            format!("stream.replicas = {} is above JetStream's maximum of 5", stream.replicas),
            "use at most 5 replicas".into(),
        ));
    }
    if stream.replicas > scenario.nodes {
        return Err((
            format!(
                "stream.replicas = {} but nodes = {}: NATS places each replica on its own server",
                stream.replicas, scenario.nodes
            ),
            format!("set nodes >= {} or stream.replicas <= {}", stream.replicas, scenario.nodes),
        ));
    }
    // Fewer replicas than nodes is fine: the target reports the final
    // placement (`replica_set`) and only the replicas are read back.
    if stream.mode() == Mode::Async && stream.replicas != 1 {
        return Err((
            format!(
                "consistency \"async\" with replicas = {}: nats-server rejects it (error 10052: async persist mode is not supported on replicated streams)",
                stream.replicas
            ),
            "use replicas = 1 (and nodes = 1) for async, or consistency = \"strong\"".into(),
        ));
    }
    sync_setting(stream.sync.as_deref())
        .map_err(|m| (m, "set stream.sync to \"always\" or a duration such as \"1s\"".into()))?;
    let payload_max = MAX_PAYLOAD_BYTES - 256;
    if scenario.workload.payload_bytes > payload_max {
        return Err((
            format!("workload.payload_bytes = {} is above nats-server's max_payload", scenario.workload.payload_bytes),
            format!("use at most {payload_max} bytes"),
        ));
    }
    Ok(())
}

/// Renders one node's nats-server config file.
pub fn render_config(scenario: &Scenario, node: &NodeSpec) -> Result<String, TargetError> {
    let quoted = |what: &str, text: &str| -> Result<String, TargetError> {
        if text.contains(['"', '\\', '\n', '\r']) {
            return Err(TargetError::Other {
                action: format!("write the nats-server config of {}", node.name),
                detail: format!("{what} {text:?} holds a quote, backslash or newline; use a plain path"),
            });
        }
        Ok(format!("\"{text}\""))
    };
    let sync = sync_setting(scenario.stream.sync.as_deref()).map_err(|detail| TargetError::Other {
        action: format!("write the nats-server config of {}", node.name),
        detail,
    })?;
    let data_dir = node.data_dir.to_str().ok_or_else(|| TargetError::Other {
        action: format!("write the nats-server config of {}", node.name),
        detail: format!("data dir {} is not UTF-8", node.data_dir.display()),
    })?;
    let mut conf = String::new();
    let _ = writeln!(conf, "# Written by jetsam for node {} of scenario {:?}.", node.name, scenario.name);
    let _ = writeln!(conf, "server_name: {}", quoted("server name", &node.name)?);
    let _ = writeln!(conf, "listen: \"{}\"", node.client_addr);
    let _ = writeln!(conf, "http: \"{}\"", node.monitor_addr);
    let _ = writeln!(conf, "jetstream {{");
    let _ = writeln!(conf, "  store_dir: {}", quoted("data dir", data_dir)?);
    match sync {
        SyncSetting::ServerDefault => {}
        SyncSetting::Always => {
            let _ = writeln!(conf, "  sync_interval: \"always\"");
        }
        SyncSetting::Interval(d) => {
            let _ = writeln!(conf, "  sync_interval: \"{}us\"", d.as_micros());
        }
    }
    let _ = writeln!(conf, "}}");
    if !node.peers.is_empty() {
        let _ = writeln!(conf, "cluster {{");
        let _ = writeln!(conf, "  name: \"jetsam\"");
        let _ = writeln!(conf, "  listen: \"{}\"", node.peer_listen_addr);
        // Client URLs are not gossiped, and the advertised route address is a
        // dead port, so peers only ever reach each other through `routes`
        // (which may be the controller's link proxies).
        let _ = writeln!(conf, "  no_advertise: true");
        let _ = writeln!(conf, "  advertise: \"{}\"", node.dead_addr);
        let _ = writeln!(conf, "  routes: [");
        for addr in node.peers.values() {
            let _ = writeln!(conf, "    \"nats-route://{addr}\"");
        }
        let _ = writeln!(conf, "  ]");
        let _ = writeln!(conf, "}}");
    }
    Ok(conf)
}
