//! Real NATS JetStream (`nats-server`) as a target.
