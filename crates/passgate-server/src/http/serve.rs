//! Serving connections: how long a client may take and how many
//! connections it may hold, and stopping gracefully.
//!
//! A client that opens a connection and sends nothing, trickles its
//! headers, or declares a body it never sends would otherwise hold its
//! connection (and a file descriptor) for ever; enough of them and the
//! server stops accepting. So every connection is watched:
//!
//! - **header timeout**: a new connection's first request, and any request
//!   once its first byte arrived, must have its whole head within this
//!   time (a trickle of one byte a second does not reset it);
//! - **idle timeout**: a kept-alive connection may wait this long for its
//!   next request after a response (longer, so clients' connection pools
//!   are not cut under them);
//! - **body timeout**: each part of a request body must arrive within this
//!   time of the last (`tower_http`'s `RequestBodyTimeout`, in the router);
//!   a body that stalls is answered `408` and the connection closed;
//! - **max connections**: beyond this many open connections, new ones wait
//!   in the kernel's backlog until one closes.
//!
//! A connection's phase is shared between its I/O (which sees the first
//! byte of a request arrive) and its service (which sees a request's head
//! complete and its response ready); the I/O enforces the deadline of the
//! phase it is in. While a request is being handled no deadline applies to
//! the connection itself.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// How long clients may take, and how many connections they may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 4096,
        }
    }
}

/// Where a connection stands, and the deadline of that phase.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for the first byte of the next request, until the deadline.
    Waiting(Instant),
    /// A request's head is arriving; it must be complete by the deadline.
    Head(Instant),
    /// A request is being handled: no deadline.
    Busy,
}

#[derive(Debug)]
struct Shared {
    phase: Mutex<Watch>,
    limits: ConnectionLimits,
}

/// The phase, and the waker of a read that found the connection busy: when
/// the request is answered, that read must run again to start the idle
/// deadline (hyper does not read again by itself until bytes arrive).
#[derive(Debug)]
struct Watch {
    phase: Phase,
    parked: Option<std::task::Waker>,
}

impl Shared {
    fn watch(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        let parked = {
            let mut watch = self.watch();
            watch.phase = phase;
            watch.parked.take()
        };
        if let Some(waker) = parked {
            waker.wake();
        }
    }

    /// Bytes arrived: a waiting connection starts its request's head.
    fn bytes_arrived(&self) {
        let mut watch = self.watch();
        if matches!(watch.phase, Phase::Waiting(_)) {
            watch.phase = Phase::Head(Instant::now() + self.limits.header_timeout);
        }
    }
}

/// A connection's socket, failing its reads once its phase's deadline
/// passes (hyper then closes the connection).
struct Watched {
    stream: TcpStream,
    shared: Arc<Shared>,
    timer: Pin<Box<Sleep>>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.shared.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = {
                    let mut watch = self.shared.watch();
                    match watch.phase {
                        Phase::Waiting(deadline) | Phase::Head(deadline) => deadline,
                        Phase::Busy => {
                            watch.parked = Some(cx.waker().clone());
                            return Poll::Pending;
                        }
                    }
                };
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client too slow"))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes;
/// then stops accepting and lets the connections finish the requests they
/// are serving.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        // A slot first: beyond the cap, connections wait in the backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors and the like: wait a moment, go on.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let shared = Arc::new(Shared {
            phase: Mutex::new(Watch { phase: Phase::Waiting(Instant::now() + limits.header_timeout), parked: None }),
            limits,
        });
        let io = Watched { stream, shared: Arc::clone(&shared), timer: Box::pin(tokio::time::sleep(Duration::ZERO)) };
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            shared.set(Phase::Busy);
            let shared = Arc::clone(&shared);
            let handled = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = handled.await;
                shared.set(Phase::Waiting(Instant::now() + shared.limits.idle_timeout));
                response
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
