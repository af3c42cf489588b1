//! The publisher: pipelined JetStream publishes and what their errors mean.

use super::*;

/// One client connection to one node, publishing with pipelined acks.
pub(super) struct NatsPublisher {
    pub(super) js: jetstream::Context,
    pub(super) node: String,
}

impl Publisher for NatsPublisher {
    fn publish(&self, id: String, payload: Vec<u8>) -> BoxFuture<'_, PublishOutcome> {
        Box::pin(async move {
            let body = message_body(&id, payload);
            let ack = match self.js.publish(SUBJECT, body.into()).await {
                Ok(ack) => ack,
                Err(e) => return send_error_outcome(&e),
            };
            match ack.await {
                Ok(ack) if ack.stream == STREAM_NAME => {
                    PublishOutcome::Ok { seq: ack.sequence, node: self.node.clone() }
                }
                Ok(ack) => PublishOutcome::Info { error: format!("acknowledged by another stream {:?}", ack.stream) },
                Err(e) => ack_error_outcome(&e),
            }
        })
    }
}

/// Before the message left the client: nothing reached the server, except
/// that a send timeout leaves that unknown.
pub(super) fn send_error_outcome(e: &jetstream::context::PublishError) -> PublishOutcome {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::TimedOut => PublishOutcome::Info { error: e.to_string() },
        _ => PublishOutcome::Fail { error: e.to_string() },
    }
}

/// Waiting for the ack, mapped as Jepsen's NATS suite does: "no responders"
/// and JetStream API errors (e.g. "temporarily unavailable") are definite;
/// a timeout, a lost connection or a garbled answer are not.
pub(super) fn ack_error_outcome(e: &jetstream::context::PublishError) -> PublishOutcome {
    use jetstream::context::PublishErrorKind as K;
    let api_error = std::error::Error::source(e).is_some_and(|s| s.downcast_ref::<jetstream::Error>().is_some());
    match e.kind() {
        K::StreamNotFound | K::WrongLastMessageId | K::WrongLastSequence | K::MaxPayloadExceeded => {
            PublishOutcome::Fail { error: e.to_string() }
        }
        K::Other if api_error => PublishOutcome::Fail { error: e.to_string() },
        _ => PublishOutcome::Info { error: e.to_string() },
    }
}
