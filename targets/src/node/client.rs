//! An async client for the reference node's protocol
//! (docs/node-protocol.md): one pipelined connection, many requests in
//! flight, answers matched by `req_id`, and paged reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jetsam_core::proto::{self, NodeStatus, Request, RequestBody, Response, ResponseBody, StoredMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Requests one client connection keeps in flight at most.
pub const CLIENT_INFLIGHT_MAX: usize = 1024;
/// Messages asked for per read page.
const READ_PAGE: u32 = 5000;
/// Pages read at most from one node (bounds a read of a misbehaving node).
const READ_PAGES_MAX: usize = 100_000;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("failed to connect to {addr}: {detail}")]
    Connect { addr: SocketAddr, detail: String },
    /// The connection was already closed: the request was never sent.
    #[error("failed to send to {addr}: the connection is closed (the request was not sent)")]
    NotSent { addr: SocketAddr },
    /// The connection closed with the request in flight: it may have been handled.
    #[error("failed to get an answer from {addr}: the connection closed with the request in flight")]
    Lost { addr: SocketAddr },
    #[error("failed to get an answer from {addr} within {waited:?}")]
    Timeout { addr: SocketAddr, waited: Duration },
}

type Waiters = Mutex<HashMap<u64, oneshot::Sender<ResponseBody>>>;

/// One pipelined connection to a node: many requests in flight (at most
/// [`CLIENT_INFLIGHT_MAX`]), answers matched by `req_id`.
pub struct Client {
    addr: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
    waiters: Arc<Waiters>,
    closed: Arc<AtomicBool>,
    next_id: AtomicU64,
    inflight: Arc<Semaphore>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Client, ClientError> {
        let sock = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(ClientError::Connect { addr, detail: e.to_string() }),
            Err(_) => return Err(ClientError::Connect { addr, detail: format!("no connection within {timeout:?}") }),
        };
        let _ = sock.set_nodelay(true);
        let (rd, mut wr) = sock.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CLIENT_INFLIGHT_MAX);
        let waiters: Arc<Waiters> = Arc::new(Mutex::new(HashMap::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let writer_closed = closed.clone();
        let writer = tokio::spawn(async move {
            while let Some(mut buf) = rx.recv().await {
                while buf.len() < (1 << 20)
                    && let Ok(more) = rx.try_recv()
                {
                    buf.extend_from_slice(&more);
                }
                if wr.write_all(&buf).await.is_err() {
                    break;
                }
            }
            writer_closed.store(true, Ordering::SeqCst);
        });
        let reader_waiters = waiters.clone();
        let reader_closed = closed.clone();
        let reader = tokio::spawn(async move {
            let mut rd = BufReader::new(rd);
            loop {
                let mut prefix = [0u8; 4];
                if rd.read_exact(&mut prefix).await.is_err() {
                    break;
                }
                let Ok(len) = proto::frame_len(prefix) else { break };
                let mut body = vec![0u8; len];
                if rd.read_exact(&mut body).await.is_err() {
                    break;
                }
                let Ok(resp) = proto::decode_body::<Response>(&body) else { break };
                let waiter = reader_waiters.lock().expect("waiters lock").remove(&resp.req_id);
                if let Some(w) = waiter {
                    let _ = w.send(resp.body);
                }
            }
            reader_closed.store(true, Ordering::SeqCst);
            // Dropping the senders wakes every waiter with "connection lost".
            reader_waiters.lock().expect("waiters lock").clear();
        });
        Ok(Client {
            addr,
            tx,
            waiters,
            closed,
            next_id: AtomicU64::new(1),
            inflight: Arc::new(Semaphore::new(CLIENT_INFLIGHT_MAX)),
            tasks: vec![writer, reader],
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends one request and waits (at most `timeout`, queueing for an
    /// in-flight slot included) for its answer.
    pub async fn request(&self, body: RequestBody, timeout: Duration) -> Result<ResponseBody, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || ClientError::Timeout { addr: self.addr, waited: timeout };
        let Ok(Ok(_permit)) = tokio::time::timeout_at(deadline, self.inflight.acquire()).await else {
            return Err(timed_out());
        };
        if self.is_closed() {
            return Err(ClientError::NotSent { addr: self.addr });
        }
        let req_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (wtx, wrx) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").insert(req_id, wtx);
        let frame = proto::encode_frame(&Request { req_id, body });
        match tokio::time::timeout_at(deadline, self.tx.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.waiters.lock().expect("waiters lock").remove(&req_id);
                return Err(ClientError::NotSent { addr: self.addr });
            }
            Err(_) => {
                self.waiters.lock().expect("waiters lock").remove(&req_id);
                return Err(timed_out());
            }
        }
        match tokio::time::timeout_at(deadline, wrx).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(_)) => Err(ClientError::Lost { addr: self.addr }),
            Err(_) => {
                self.waiters.lock().expect("waiters lock").remove(&req_id);
                Err(timed_out())
            }
        }
    }

    pub async fn status(&self, timeout: Duration) -> Result<NodeStatus, String> {
        match self.request(RequestBody::Status, timeout).await {
            Ok(ResponseBody::Status { status }) => Ok(status),
            Ok(other) => Err(format!("unexpected answer to status: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Reads all messages with `ReadLocal` (`local`) or `ReadCluster`, paging until `more == false`.
    pub async fn read_all(&self, stream: &str, local: bool) -> Result<Vec<StoredMessage>, String> {
        self.read_all_with(stream, local, false).await
    }

    /// [`Client::read_all`], optionally without payloads (`ids_only`: what read-back needs).
    pub async fn read_all_with(&self, stream: &str, local: bool, ids_only: bool) -> Result<Vec<StoredMessage>, String> {
        let mut out: Vec<StoredMessage> = Vec::new();
        let mut from_seq = 1;
        for _ in 0..READ_PAGES_MAX {
            let body = if local {
                RequestBody::ReadLocal { stream: stream.to_string(), from_seq, max: READ_PAGE, ids_only }
            } else {
                RequestBody::ReadCluster { stream: stream.to_string(), from_seq, max: READ_PAGE, ids_only }
            };
            match self.request(body, READ_TIMEOUT).await {
                Ok(ResponseBody::Messages { messages, more }) => {
                    if let Some(last) = messages.last() {
                        from_seq = last.seq + 1;
                    }
                    let empty = messages.is_empty();
                    out.extend(messages);
                    if !more {
                        return Ok(out);
                    }
                    if empty {
                        return Err(format!("{} said more messages follow but sent none", self.addr));
                    }
                }
                Ok(ResponseBody::Error { error }) => {
                    return Err(format!("{}: {:?}: {}", self.addr, error.code, error.message));
                }
                Ok(other) => return Err(format!("unexpected answer to a read: {other:?}")),
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("{} kept saying more messages follow after {READ_PAGES_MAX} pages", self.addr))
    }
}
