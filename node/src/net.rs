//! Sockets: the client listener (docs/node-protocol.md) and the peer
//! transport. Each node dials every peer at its given address (possibly a
//! fault proxy), reconnecting with backoff, and accepts peers on its own
//! peer listen address. Dialed connections carry this node's Raft messages
//! and pings; the accepting side answers pings with pongs, so a blackholed
//! link is noticed (no pong in [`PEER_DEAD_AFTER`]) and redialed. Every
//! socket operation has a timeout and every queue a bound, so one stuck
//! peer never blocks the event loop. It does no Raft logic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jetsam_core::proto::{self, ErrorCode, Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::timeout;

use crate::core::{Event, Reply};
use crate::wire::{PeerFrame, WireMessage};

/// Requests one client connection may have in flight.
pub const CLIENT_INFLIGHT_MAX: usize = 4096;
/// Raft messages queued per peer before new ones are dropped.
pub const PEER_QUEUE_MAX: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const PING_INTERVAL: Duration = Duration::from_millis(250);
/// A link with no pong (dialing side) or no frame (accepting side) for this long is redialed.
pub const PEER_DEAD_AFTER: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Reads one length-prefixed frame body.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix).await?;
    let len = proto::frame_len(prefix).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// Accepts client connections forever.
pub async fn serve_clients(listener: TcpListener, events: mpsc::Sender<Event>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                tokio::spawn(client_conn(sock, events.clone()));
            }
            Err(e) => {
                tracing::warn!("failed to accept a client connection: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn client_conn(sock: TcpStream, events: mpsc::Sender<Event>) {
    let (rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Response>();
    let writer = tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(resp) = rx.recv().await {
            buf.clear();
            buf.extend_from_slice(&proto::encode_frame(&resp));
            while buf.len() < (1 << 20)
                && let Ok(more) = rx.try_recv()
            {
                buf.extend_from_slice(&proto::encode_frame(&more));
            }
            if wr.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(CLIENT_INFLIGHT_MAX));
    let mut rd = BufReader::new(rd);
    loop {
        let Ok(body) = read_frame(&mut rd).await else { break };
        let req: Request = match proto::decode_body(&body) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Response {
                    req_id: 0,
                    body: proto::ResponseBody::Error {
                        error: proto::ProtoError {
                            code: ErrorCode::BadRequest,
                            message: format!("{e}; closing the connection (see docs/node-protocol.md)"),
                            definite: true,
                            leader_hint: None,
                        },
                    },
                });
                break;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let reply = Reply { tx: tx.clone(), req_id: req.req_id, permit };
        match events.try_send(Event::Client { req, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(Event::Client { reply, .. })) => reply.error(
                ErrorCode::Overloaded,
                "the node's request queue is full; nothing was done, retry",
                true,
                None,
            ),
            Err(_) => break,
        }
    }
    drop(tx);
    // Let answers still owed to this client go out before the writer ends.
    let _ = writer.await;
}

/// Accepts peer connections forever.
pub async fn serve_peers(listener: TcpListener, events: mpsc::Sender<Event>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                tokio::spawn(peer_in(sock, events.clone()));
            }
            Err(e) => {
                tracing::warn!("failed to accept a peer connection: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn peer_in(sock: TcpStream, events: mpsc::Sender<Event>) {
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    let mut from = String::from("?");
    loop {
        let body = match timeout(PEER_DEAD_AFTER, read_frame(&mut rd)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::debug!(peer = %from, "peer connection closed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %from, "peer connection silent for {PEER_DEAD_AFTER:?}; closing");
                return;
            }
        };
        let frame: PeerFrame = match proto::decode_body(&body) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(peer = %from, "closing a peer connection that sent a bad frame: {e}");
                return;
            }
        };
        match frame {
            PeerFrame::Hello { from: name } => from = name,
            PeerFrame::Ping => {
                let pong = proto::encode_frame(&PeerFrame::Pong);
                if !matches!(timeout(WRITE_TIMEOUT, wr.write_all(&pong)).await, Ok(Ok(()))) {
                    return;
                }
            }
            PeerFrame::Pong => {}
            PeerFrame::Raft(msg) => match events.try_send(Event::Peer(msg)) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Closed(_)) => return,
            },
        }
    }
}

/// Keeps a connection to one peer, sending what the event loop queues.
pub async fn peer_out(my_name: String, peer: String, addr: std::net::SocketAddr, mut rx: mpsc::Receiver<WireMessage>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(sock)) => {
                let _ = sock.set_nodelay(true);
                tracing::debug!(%peer, %addr, "connected to peer");
                let started = Instant::now();
                match run_out(sock, &my_name, &mut rx).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(%peer, %addr, "peer link dropped: {e}; redialing"),
                }
                if started.elapsed() > BACKOFF_MAX {
                    backoff = BACKOFF_MIN;
                }
            }
            Ok(Err(e)) => tracing::trace!(%peer, %addr, "failed to connect: {e}"),
            Err(_) => tracing::trace!(%peer, %addr, "connect timed out"),
        }
        // Messages queued while the link is down are stale by the time it
        // is back; Raft resends what matters.
        loop {
            match rx.try_recv() {
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn write_timed(wr: &mut tokio::net::tcp::OwnedWriteHalf, bytes: &[u8]) -> Result<(), String> {
    match timeout(WRITE_TIMEOUT, wr.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err(format!("write blocked for {WRITE_TIMEOUT:?}")),
    }
}

/// Returns Ok when the event loop is gone, Err when the link must be redialed.
async fn run_out(sock: TcpStream, my_name: &str, rx: &mut mpsc::Receiver<WireMessage>) -> Result<(), String> {
    let (rd, mut wr) = sock.into_split();
    write_timed(&mut wr, &proto::encode_frame(&PeerFrame::Hello { from: my_name.to_string() })).await?;
    let (pong_tx, mut pong_rx) = mpsc::channel::<()>(16);
    let reader = tokio::spawn(async move {
        let mut rd = BufReader::new(rd);
        while let Ok(body) = read_frame(&mut rd).await {
            if matches!(proto::decode_body::<PeerFrame>(&body), Ok(PeerFrame::Pong)) && pong_tx.send(()).await.is_err()
            {
                return;
            }
        }
    });
    let mut ping = tokio::time::interval(PING_INTERVAL);
    let mut last_pong = Instant::now();
    let result = loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break Ok(()) };
                let mut buf = proto::encode_frame(&PeerFrame::Raft(msg));
                while buf.len() < (1 << 20) && let Ok(more) = rx.try_recv() {
                    buf.extend_from_slice(&proto::encode_frame(&PeerFrame::Raft(more)));
                }
                if let Err(e) = write_timed(&mut wr, &buf).await {
                    break Err(e);
                }
            }
            _ = ping.tick() => {
                if last_pong.elapsed() > PEER_DEAD_AFTER {
                    break Err(format!("no pong for {PEER_DEAD_AFTER:?}"));
                }
                if let Err(e) = write_timed(&mut wr, &proto::encode_frame(&PeerFrame::Ping)).await {
                    break Err(e);
                }
            }
            pong = pong_rx.recv() => {
                match pong {
                    Some(()) => last_pong = Instant::now(),
                    None => break Err("connection closed by peer".to_string()),
                }
            }
        }
    };
    reader.abort();
    result
}
