//! Reading a replica back: through a consumer on a live node, or from its
//! message block files after a clean stop.

use super::*;

pub(super) async fn read_through(node: &NodeSpec) -> Result<Vec<RecoveredMsg>, String> {
    let client = connect(node, "jetsam-read-cluster".into(), READ_CLUSTER_IDLE_TIMEOUT).await?;
    let js = jetstream::new(client);
    let mut stream = js.get_stream(STREAM_NAME).await.map_err(|e| format!("{}: get stream: {e}", node.name))?;
    let last_seq = stream.info().await.map_err(|e| format!("{}: stream info: {e}", node.name))?.state.last_sequence;
    if last_seq == 0 {
        return Ok(Vec::new());
    }
    let messages_u32 = u32::try_from(last_seq).unwrap_or(u32::MAX);
    let bound = READ_CLUSTER_BASE_TIMEOUT + READ_CLUSTER_PER_MESSAGE_TIMEOUT * messages_u32;
    match tokio::time::timeout(bound, consume_all(node, &mut stream, last_seq)).await {
        Ok(result) => result,
        Err(_) => Err(format!("{}: reading {last_seq} messages took over {bound:?}", node.name)),
    }
}

/// Reads sequences 1..=last_seq through an ordered consumer.
pub(super) async fn consume_all(
    node: &NodeSpec,
    stream: &mut stream::Stream,
    last_seq: u64,
) -> Result<Vec<RecoveredMsg>, String> {
    let mut out = Vec::new();
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("{}: create ordered consumer: {e}", node.name))?;
    let mut messages = consumer.messages().await.map_err(|e| format!("{}: consume: {e}", node.name))?;
    loop {
        let next = tokio::time::timeout(READ_CLUSTER_IDLE_TIMEOUT, messages.next()).await.map_err(|_| {
            format!(
                "{}: no message within {READ_CLUSTER_IDLE_TIMEOUT:?} after {} read (stream last seq {last_seq})",
                node.name,
                out.len()
            )
        })?;
        let message = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("{}: ordered consumer: {e} after {} read", node.name, out.len())),
            None => return Err(format!("{}: ordered consumer ended after {} read", node.name, out.len())),
        };
        let seq =
            message.info().map_err(|e| format!("{}: message without stream info: {e}", node.name))?.stream_sequence;
        let header = message.headers.as_ref().and_then(|h| h.get(ID_HEADER)).map(|v| v.as_str());
        let id = header.filter(|id| !id.is_empty()).or_else(|| message_id(None, &message.payload));
        out.push(RecoveredMsg { seq, id: id_or_marker(id, seq) });
        if seq >= last_seq {
            return Ok(out);
        }
    }
}

/// Reads node's replica from its message blocks (the node must be stopped).
pub fn read_node_files(node: &NodeSpec) -> Result<Vec<RecoveredMsg>, String> {
    let msgs_dir = node.data_dir.join("jetstream").join("$G").join("streams").join(STREAM_NAME).join("msgs");
    if !msgs_dir.is_dir() {
        // The controller reads back only the stream's replicas (its final
        // placement, `replica_set`), and the stream was created only once
        // every replica was current, so a missing directory is a replica
        // that nats-server deleted or never made durable: it holds nothing,
        // and the checker counts what it misses.
        // Reading it as unreadable would hide the loss (NATS #7556: nodes
        // with a corrupt meta snapshot delete the stream as an orphan).
        tracing::warn!(
            node = %node.name,
            "no {} directory: the node's replica of stream {STREAM_NAME} is gone; read as holding no messages",
            msgs_dir.display()
        );
        return Ok(Vec::new());
    }
    let stored = blocks::read_stream_messages(STREAM_NAME, &msgs_dir).map_err(|e| format!("{}: {e}", node.name))?;
    Ok(stored.into_iter().map(|m| RecoveredMsg { seq: m.seq, id: id_or_marker(m.id.as_deref(), m.seq) }).collect())
}
