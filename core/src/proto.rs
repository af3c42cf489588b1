//! The reference node's client protocol (docs/node-protocol.md): frames of a
//! 4-byte big-endian length followed by that many bytes of JSON. A client
//! sends [`Request`]s, each with a `req_id` of its choosing, and gets exactly
//! one [`Response`] per request carrying the same `req_id`, possibly out of
//! order (so clients may pipeline). Only types and byte-level framing live
//! here; sockets are the node's and the targets' business.

use serde::{Deserialize, Serialize};

use crate::report::Mode;

/// Largest frame either side accepts; a larger length prefix is a protocol
/// error (it protects both sides from allocating garbage sizes).
pub const FRAME_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub req_id: u64,
    #[serde(flatten)]
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RequestBody {
    /// Create the stream (idempotent when the config is identical).
    CreateStream {
        config: StreamConfig,
    },
    /// Change replicas or consistency of an existing stream (ADR rules apply).
    UpdateStream {
        config: StreamConfig,
    },
    StreamInfo {
        stream: String,
    },
    /// Publish one message; acked once committed (see docs/node-protocol.md).
    Publish {
        stream: String,
        id: String,
        payload: Vec<u8>,
    },
    /// Publish several messages atomically (all or none); not allowed on async streams.
    PublishBatch {
        stream: String,
        messages: Vec<BatchMessage>,
    },
    /// Read committed messages through the leader, from `from_seq` on.
    ReadCluster {
        stream: String,
        from_seq: u64,
        max: u32,
    },
    /// Read what this node itself stores, from `from_seq` on, whatever its
    /// role or quorum (read-back after recovery).
    ReadLocal {
        stream: String,
        from_seq: u64,
        max: u32,
    },
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMessage {
    pub id: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    pub name: String,
    pub replicas: u32,
    /// Unset means strong, and stream info leaves it unset (ADR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Mode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub req_id: u64,
    #[serde(flatten)]
    pub body: ResponseBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ResponseBody {
    Created { info: StreamInfo },
    Info { info: StreamInfo },
    PubAck { seq: u64 },
    BatchAck { first_seq: u64, count: u64 },
    Messages { messages: Vec<StoredMessage>, more: bool },
    Status { status: NodeStatus },
    Error { error: ProtoError },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub config: StreamConfig,
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: u64,
    pub leader: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub seq: u64,
    pub id: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub role: Role,
    pub term: u64,
    pub leader: Option<String>,
    pub commit_index: u64,
    pub last_seq: u64,
    /// False when the node refuses to serve (e.g. fail-stopped on corruption).
    pub healthy: bool,
    pub detail: Option<String>,
}

/// An error answer. `definite` is the line between `fail` and `info` in the
/// history: true means the write certainly did not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
    pub definite: bool,
    /// Where the leader is, when the node knows and is not it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_hint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotLeader,
    NoQuorum,
    NoStream,
    StreamExists,
    InvalidConfig,
    AsyncRequiresR1,
    BatchOnAsync,
    Timeout,
    Unhealthy,
    BadRequest,
    /// The node's request queue is full; nothing was done (definite), retry later.
    Overloaded,
    Internal,
}

/// The deliberate bugs `jetsam-node --bug NAME` knows (docs/node.md).
pub const KNOWN_BUGS: [&str; 3] = ["ack-before-write", "ack-before-fsync", "trust-corrupt-log"];

/// Replica counts a stream may have.
pub const REPLICAS_ALLOWED: [u32; 3] = [1, 3, 5];

/// Checks a stream config for creation on a cluster of `cluster_nodes`
/// nodes: the NATS ADR write-consistency rules (`async` only with one
/// replica) and the reference node's own rule (every node is a replica, so
/// replicas must equal the node count). Returns the error code and message
/// the node answers with.
pub fn check_create(config: &StreamConfig, cluster_nodes: u32) -> Result<(), (ErrorCode, String)> {
    if config.name.is_empty() || config.name.len() > 255 {
        return Err((ErrorCode::InvalidConfig, "stream name must be 1 to 255 bytes".into()));
    }
    if !REPLICAS_ALLOWED.contains(&config.replicas) {
        return Err((ErrorCode::InvalidConfig, format!("replicas must be 1, 3 or 5, not {}", config.replicas)));
    }
    if config.consistency == Some(Mode::Async) && config.replicas != 1 {
        return Err((
            ErrorCode::AsyncRequiresR1,
            format!("async consistency requires replicas = 1, not {} (use strong, or one replica)", config.replicas),
        ));
    }
    if config.replicas != cluster_nodes {
        return Err((
            ErrorCode::InvalidConfig,
            format!(
                "replicas must equal the cluster's node count ({cluster_nodes}): every jetsam-node is a replica, not {}",
                config.replicas
            ),
        ));
    }
    Ok(())
}

/// Checks an update of `old` to `new`: the creation rules plus the ADR's
/// "an async stream cannot be scaled above one replica" and an unchanged name.
pub fn check_update(old: &StreamConfig, new: &StreamConfig, cluster_nodes: u32) -> Result<(), (ErrorCode, String)> {
    if old.name != new.name {
        return Err((ErrorCode::InvalidConfig, format!("cannot rename stream {:?} to {:?}", old.name, new.name)));
    }
    if old.consistency == Some(Mode::Async) && new.replicas > 1 {
        return Err((
            ErrorCode::AsyncRequiresR1,
            format!(
                "cannot scale async stream {:?} to {} replicas: async requires replicas = 1",
                old.name, new.replicas
            ),
        ));
    }
    check_create(new, cluster_nodes)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("failed to decode a frame: length {0} exceeds FRAME_BYTES_MAX")]
    TooLarge(usize),
    #[error("failed to decode a frame: {0}")]
    Json(String),
}

/// Encodes a value as one frame (length prefix + JSON).
pub fn encode_frame<T: Serialize>(value: &T) -> Vec<u8> {
    let body = serde_json::to_vec(value).expect("protocol types always serialize");
    assert!(body.len() <= FRAME_BYTES_MAX, "frame of {} bytes exceeds FRAME_BYTES_MAX", body.len());
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads a frame's length prefix and checks it against the limit.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body (without its prefix).
pub fn decode_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let req = Request {
            req_id: 7,
            body: RequestBody::Publish { stream: "s".into(), id: "0-1".into(), payload: vec![1, 2] },
        };
        let frame = encode_frame(&req);
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        let back: Request = decode_body(&frame[4..]).unwrap();
        assert_eq!(back, req);
    }
}
