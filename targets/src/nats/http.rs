//! A minimal HTTP/1.0 GET over a tokio `TcpStream`, enough for the NATS
//! monitoring endpoints (`/healthz`, `/jsz`) on loopback. It does not follow
//! redirects, speak TLS, keep connections alive or decode chunked bodies
//! (HTTP/1.0 requests get plain bodies from Go's server).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response body accepted; `/jsz` of one stream is a few KiB.
const RESPONSE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// GETs `path` from `addr`, bounded by `timeout`; returns (status, body).
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    match tokio::time::timeout(timeout, get_unbounded(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(format!("GET http://{addr}{path}: no complete answer within {timeout:?}")),
    }
}

async fn get_unbounded(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("GET http://{addr}{path}: connect: {e}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("GET http://{addr}{path}: send: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(RESPONSE_BYTES_MAX)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("GET http://{addr}{path}: read: {e}"))?;
    parse_response(&raw).map_err(|e| format!("GET http://{addr}{path}: {e}"))
}

/// Splits a raw HTTP/1.x response into status code and body.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("response without a header end ({} bytes)", raw.len()))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "response head is not UTF-8".to_string())?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {status_line:?}"));
    }
    let status =
        parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| format!("no status code in {status_line:?}"))?;
    let body = String::from_utf8_lossy(&raw[head_end + 4..]).into_owned();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"ok\"}";
        assert_eq!(parse_response(raw).unwrap(), (200, "{\"status\":\"ok\"}".to_string()));
        let raw = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (503, String::new()));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.0 abc\r\n\r\n").is_err());
    }
}
