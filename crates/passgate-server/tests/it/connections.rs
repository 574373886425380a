//! How long a client may take, and how many connections it may hold
//! (`http::serve`): silent, trickling and stalled clients are cut off,
//! kept-alive connections live out their idle timeout, and connections
//! beyond the cap wait.

use std::time::Duration;

use passgate_server::http::serve::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

fn limits(header: u64, body: u64, idle: u64, max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_millis(header),
        body_timeout: Duration::from_millis(body),
        idle_timeout: Duration::from_millis(idle),
        max_connections,
    }
}

async fn server_with(connections: ConnectionLimits) -> TestServer {
    TestServer::start_with(Options { connections: Some(connections), ..Options::default() }).await
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Reads until the server closes the connection (or `patience` runs out,
/// which fails the test); returns what it sent.
async fn until_closed(stream: &mut TcpStream, patience: Duration) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(patience, read_all).await.unwrap_or_else(|_| panic!("the server kept the connection open"));
    String::from_utf8_lossy(&received).into_owned()
}

/// One request on `stream`, whose response closes nothing; returns the
/// response's head and body as text.
async fn request(stream: &mut TcpStream, path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no response"))
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A connection that sends nothing is closed after the header timeout.
#[tokio::test]
async fn a_silent_connection_is_closed() {
    let server = server_with(limits(500, 10_000, 60_000, 100)).await;
    let mut silent = connect(&server).await;
    let started = tokio::time::Instant::now();
    until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(400), "closed before its time: {:?}", started.elapsed());
}

/// Headers trickled a byte at a time do not keep a connection: the whole
/// head must arrive within the header timeout of its first byte.
#[tokio::test]
async fn trickled_headers_are_cut_off() {
    let server = server_with(limits(800, 10_000, 60_000, 100)).await;
    let mut slow = connect(&server).await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let trickle = async {
        for byte in head {
            if slow.write_all(&[*byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    };
    let finished = tokio::time::timeout(Duration::from_secs(10), trickle).await.unwrap_or(true);
    let answer = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(!finished || !answer.contains("200 OK"), "a head trickled over 8 s was served: {answer}");
}

/// A declared body that never arrives is answered 408 once its first part
/// is late by the body timeout, and the connection is closed.
#[tokio::test]
async fn a_body_that_never_arrives_is_answered_408() {
    let server = server_with(limits(5_000, 500, 60_000, 100)).await;
    let mut stalled = connect(&server).await;
    let head = format!(
        "POST /api/v2/auth/start HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"email\"",
        server.key
    );
    stalled.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let answer = until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
}

/// After a response, a kept-alive connection waits for its next request up
/// to the idle timeout (longer than the header timeout), then is closed.
#[tokio::test]
async fn a_kept_alive_connection_lives_out_its_idle_timeout() {
    let server = server_with(limits(400, 10_000, 2_000, 100)).await;
    let mut kept = connect(&server).await;
    assert!(request(&mut kept, "/healthz").await.starts_with("HTTP/1.1 200"));
    // Longer than the header timeout: still open, and still serving.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(request(&mut kept, "/healthz").await.starts_with("HTTP/1.1 200"));
    let idle = tokio::time::Instant::now();
    until_closed(&mut kept, Duration::from_secs(6)).await;
    assert!(idle.elapsed() >= Duration::from_millis(1_500), "closed after {:?} idle", idle.elapsed());
}

/// Beyond the cap, a new connection is not served until one closes. (A
/// server without the cap answers at once, so the short look at the third
/// connection cannot pass by the answer merely being late.)
#[tokio::test]
async fn connections_beyond_the_cap_wait_for_one_to_close() {
    let server = server_with(limits(30_000, 10_000, 60_000, 2)).await;
    let mut held = vec![connect(&server).await, connect(&server).await];
    // Both are the server's: each answers.
    for stream in &mut held {
        assert!(request(stream, "/healthz").await.starts_with("HTTP/1.1 200"));
    }
    let mut third = connect(&server).await;
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap_or_else(|e| panic!("{e}"));
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "a connection beyond the cap was served");
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("still not served after a connection closed"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}
