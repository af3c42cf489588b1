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
        #[serde(with = "hex_bytes")]
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
        /// Leave payloads out of the answer (empty); read-back needs only seq and id.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ids_only: bool,
    },
    /// Read what this node itself stores, from `from_seq` on, whatever its
    /// role or quorum (read-back after recovery).
    ReadLocal {
        stream: String,
        from_seq: u64,
        max: u32,
        /// Leave payloads out of the answer (empty); read-back needs only seq and id.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ids_only: bool,
    },
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMessage {
    pub id: String,
    #[serde(with = "hex_bytes")]
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
    #[serde(with = "hex_bytes")]
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

/// serde helper: bytes as a lowercase hex string (a JSON array of numbers
/// costs ~3.5 bytes per byte and much more CPU to parse).
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = Vec::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(DIGITS[(b >> 4) as usize]);
            out.push(DIGITS[(b & 15) as usize]);
        }
        String::from_utf8(out).expect("hex digits are ASCII")
    }

    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        fn nibble(c: u8) -> Result<u8, String> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(format!("invalid hex digit {:?}", c as char)),
            }
        }
        let t = text.as_bytes();
        if !t.len().is_multiple_of(2) {
            return Err(format!("hex string of odd length {}", t.len()));
        }
        t.chunks_exact(2).map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        decode(&text).map_err(serde::de::Error::custom)
    }
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

    fn cfg(replicas: u32, consistency: Option<Mode>) -> StreamConfig {
        StreamConfig { name: "s".into(), replicas, consistency }
    }

    #[test]
    fn payloads_are_hex_strings() {
        let req = Request {
            req_id: 1,
            body: RequestBody::Publish { stream: "s".into(), id: "a".into(), payload: vec![0, 1, 0xab, 0xff] },
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains(r#""payload":"0001abff""#), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), req);
        assert_eq!(hex_bytes::decode("0g").unwrap_err(), "invalid hex digit 'g'");
        assert!(hex_bytes::decode("abc").is_err());
    }

    #[test]
    fn adr_rules_on_create() {
        assert_eq!(check_create(&cfg(3, None), 3), Ok(()));
        assert_eq!(check_create(&cfg(1, Some(Mode::Async)), 1), Ok(()));
        for replicas in [3, 5] {
            let (code, message) = check_create(&cfg(replicas, Some(Mode::Async)), replicas).unwrap_err();
            assert_eq!(code, ErrorCode::AsyncRequiresR1);
            assert!(message.contains("replicas = 1"), "{message}");
        }
        assert_eq!(check_create(&cfg(2, None), 2).unwrap_err().0, ErrorCode::InvalidConfig);
        assert_eq!(check_create(&cfg(1, None), 3).unwrap_err().0, ErrorCode::InvalidConfig);
        let unnamed = StreamConfig { name: String::new(), replicas: 1, consistency: None };
        assert_eq!(check_create(&unnamed, 1).unwrap_err().0, ErrorCode::InvalidConfig);
    }

    #[test]
    fn adr_rules_on_update() {
        let async_r1 = cfg(1, Some(Mode::Async));
        assert_eq!(check_update(&async_r1, &cfg(3, None), 3).unwrap_err().0, ErrorCode::AsyncRequiresR1);
        assert_eq!(check_update(&async_r1, &cfg(1, None), 1), Ok(()));
        assert_eq!(check_update(&cfg(1, None), &async_r1, 1), Ok(()));
        let renamed = StreamConfig { name: "t".into(), replicas: 1, consistency: None };
        assert_eq!(check_update(&cfg(1, None), &renamed, 1).unwrap_err().0, ErrorCode::InvalidConfig);
    }

    #[test]
    fn unset_consistency_stays_unset_on_the_wire() {
        let json = serde_json::to_string(&cfg(3, None)).unwrap();
        assert!(!json.contains("consistency"), "{json}");
        let back: StreamConfig = serde_json::from_str(r#"{"name":"s","replicas":1,"consistency":"async"}"#).unwrap();
        assert_eq!(back.consistency, Some(Mode::Async));
    }
}
