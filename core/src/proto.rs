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

/// Deserialized by hand (see the `Deserialize` impl below): the derived
/// form of a flattened, internally tagged enum buffers every field into an
/// intermediate tree first, which cost a node ~8% of its CPU per publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    pub req_id: u64,
    #[serde(flatten)]
    pub body: RequestBody,
}

/// The `op` tag: one name per [`RequestBody`] variant (the test
/// `every_request_round_trips` fails to compile when a variant has none).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    CreateStream,
    UpdateStream,
    StreamInfo,
    Publish,
    PublishBatch,
    ReadCluster,
    ReadLocal,
    Status,
}

/// Every field any request may carry, in one flat struct: serde reads it in
/// one pass whatever the field order, and [`FlatRequest::into_request`]
/// then checks that the fields the `op` needs are there. Unknown fields are
/// ignored, as the derived form ignored them.
#[derive(Deserialize)]
struct FlatRequest {
    req_id: u64,
    op: Op,
    config: Option<StreamConfig>,
    stream: Option<String>,
    id: Option<String>,
    #[serde(default, deserialize_with = "hex_bytes::deserialize_some")]
    payload: Option<Vec<u8>>,
    messages: Option<Vec<BatchMessage>>,
    from_seq: Option<u64>,
    max: Option<u32>,
    #[serde(default)]
    ids_only: bool,
}

impl FlatRequest {
    fn into_request<E: serde::de::Error>(self) -> Result<Request, E> {
        fn need<T, E: serde::de::Error>(field: Option<T>, name: &'static str) -> Result<T, E> {
            field.ok_or_else(|| E::missing_field(name))
        }
        let body = match self.op {
            Op::CreateStream => RequestBody::CreateStream { config: need(self.config, "config")? },
            Op::UpdateStream => RequestBody::UpdateStream { config: need(self.config, "config")? },
            Op::StreamInfo => RequestBody::StreamInfo { stream: need(self.stream, "stream")? },
            Op::Publish => RequestBody::Publish {
                stream: need(self.stream, "stream")?,
                id: need(self.id, "id")?,
                payload: need(self.payload, "payload")?,
            },
            Op::PublishBatch => RequestBody::PublishBatch {
                stream: need(self.stream, "stream")?,
                messages: need(self.messages, "messages")?,
            },
            Op::ReadCluster => RequestBody::ReadCluster {
                stream: need(self.stream, "stream")?,
                from_seq: need(self.from_seq, "from_seq")?,
                max: need(self.max, "max")?,
                ids_only: self.ids_only,
            },
            Op::ReadLocal => RequestBody::ReadLocal {
                stream: need(self.stream, "stream")?,
                from_seq: need(self.from_seq, "from_seq")?,
                max: need(self.max, "max")?,
                ids_only: self.ids_only,
            },
            Op::Status => RequestBody::Status,
        };
        Ok(Request { req_id: self.req_id, body })
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Request, D::Error> {
        FlatRequest::deserialize(d)?.into_request()
    }
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
pub const KNOWN_BUGS: [&str; 4] = ["ack-before-write", "ack-before-fsync", "trust-corrupt-log", "skip-dir-fsync"];

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

    /// A digit's value, or `BAD` (a plain loop over this table decodes
    /// ~5x faster than an iterator of `Result`s; payloads are on every
    /// publish's path).
    const BAD: u8 = 0xff;
    const VALUE: [u8; 256] = {
        let mut t = [BAD; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };

    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        let t = text.as_bytes();
        if !t.len().is_multiple_of(2) {
            return Err(format!("hex string of odd length {}", t.len()));
        }
        let mut out = Vec::with_capacity(t.len() / 2);
        for pair in t.chunks_exact(2) {
            let (hi, lo) = (VALUE[pair[0] as usize], VALUE[pair[1] as usize]);
            if hi == BAD || lo == BAD {
                // Pairs go in order, so the text's first non-digit is in this
                // pair; take it from the text to name a multi-byte one whole.
                let bad = text.chars().find(|ch| !ch.is_ascii_hexdigit()).expect("a byte failed the table");
                return Err(format!("invalid hex digit {bad:?}"));
            }
            out.push(hi << 4 | lo);
        }
        Ok(out)
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        decode(&text).map_err(serde::de::Error::custom)
    }

    /// [`deserialize`] for an optional field that is present.
    pub fn deserialize_some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        deserialize(d).map(Some)
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
        assert_eq!(hex_bytes::decode("00é").unwrap_err(), "invalid hex digit 'é'");
        assert!(hex_bytes::decode("abc").is_err());
        assert_eq!(hex_bytes::decode("09afAF").unwrap(), vec![0x09, 0xaf, 0xaf]);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_bytes::decode(&hex_bytes::encode(&all)).unwrap(), all);
    }

    /// Every request kind survives encode then decode (the hand-written
    /// decoder against the derived encoder), in any field order, and a
    /// missing field or a bad op is an error that names it.
    #[test]
    fn every_request_round_trips() {
        let config = cfg(3, Some(Mode::Async));
        let bodies = [
            RequestBody::CreateStream { config: config.clone() },
            RequestBody::UpdateStream { config: cfg(1, None) },
            RequestBody::StreamInfo { stream: "s".into() },
            RequestBody::Publish { stream: "s".into(), id: "1-2".into(), payload: vec![0, 0xfe] },
            RequestBody::PublishBatch {
                stream: "s".into(),
                messages: vec![BatchMessage { id: "a".into(), payload: vec![1] }],
            },
            RequestBody::ReadCluster { stream: "s".into(), from_seq: 5, max: 10, ids_only: true },
            RequestBody::ReadLocal { stream: "s".into(), from_seq: 1, max: 2, ids_only: false },
            RequestBody::Status,
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            // No wildcard: a new variant must get an `Op` and a case above.
            match &body {
                RequestBody::CreateStream { .. }
                | RequestBody::UpdateStream { .. }
                | RequestBody::StreamInfo { .. }
                | RequestBody::Publish { .. }
                | RequestBody::PublishBatch { .. }
                | RequestBody::ReadCluster { .. }
                | RequestBody::ReadLocal { .. }
                | RequestBody::Status => {}
            }
            let req = Request { req_id: i as u64, body };
            let json = serde_json::to_string(&req).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), req, "{json}");
            // The same fields in reverse order, plus one nobody knows.
            let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).unwrap();
            let mut reversed: Vec<_> = value.into_iter().collect();
            reversed.reverse();
            let mut text = String::from("{\"future_field\":1");
            for (k, v) in reversed {
                text.push_str(&format!(",{}:{}", serde_json::to_string(&k).unwrap(), v));
            }
            text.push('}');
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req, "{text}");
        }
        let missing = serde_json::from_str::<Request>(r#"{"req_id":1,"op":"publish","stream":"s","payload":""}"#);
        assert!(missing.unwrap_err().to_string().contains("missing field `id`"));
        let no_id = serde_json::from_str::<Request>(r#"{"op":"status"}"#);
        assert!(no_id.unwrap_err().to_string().contains("missing field `req_id`"));
        let bad_op = serde_json::from_str::<Request>(r#"{"req_id":1,"op":"drop_everything"}"#);
        assert!(bad_op.unwrap_err().to_string().contains("unknown variant `drop_everything`"));
        let bad_hex =
            serde_json::from_str::<Request>(r#"{"req_id":1,"op":"publish","stream":"s","id":"a","payload":"zz"}"#);
        assert!(bad_hex.unwrap_err().to_string().contains("invalid hex digit 'z'"));
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
