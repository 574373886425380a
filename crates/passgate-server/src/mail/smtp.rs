//! A small pool of SMTP connections, each a lettre `AsyncSmtpConnection`
//! over a socket we open ourselves, so we can set `TCP_NODELAY`.
//!
//! Why not lettre's own pooled transport: it writes the message body and the
//! closing `.` in two writes on a socket with Nagle's algorithm on, so the
//! second write waits for the ACK of the first, which the relay delays
//! (~40 ms on Linux) because it is itself waiting for the `.`. With eight
//! connections that caps delivery at about 200 emails a second however fast
//! everything else is. With `TCP_NODELAY` a message costs its round trips.
//!
//! TLS: `smtps://` wraps the socket in TLS before the greeting (rustls, the
//! public web roots plus `smtp_ca_file`); STARTTLS upgrades it with lettre's
//! own `starttls` and the same roots.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Idle connections older than this are closed rather than reused: relays
/// drop idle clients after a minute or more, and a reconnect is cheap.
const MAX_IDLE: Duration = Duration::from_secs(30);

use lettre::address::Envelope;
use lettre::transport::smtp::Error;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;

/// How the connection is protected.
#[derive(Clone)]
pub enum Security {
    None,
    StartTls { parameters: TlsParameters, required: bool },
    Implicit { connector: tokio_rustls::TlsConnector, server_name: rustls_pki_types::ServerName<'static> },
}

#[derive(Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<Credentials>,
    pub timeout: Duration,
}

/// TLS from the first byte, as lettre's stream trait wants it.
#[derive(Debug)]
struct ImplicitTls(TlsStream<TcpStream>);

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// Why a send failed, before it is reduced to an API category.
#[derive(Debug)]
pub enum SendError {
    /// The relay or lettre refused (has the SMTP reply code when there is one).
    Smtp(Error),
    /// The TCP connection could not be made.
    Connect(std::io::Error),
    /// The TLS handshake of `smtps://` failed.
    Tls(std::io::Error),
    Timeout,
}

impl From<Error> for SendError {
    fn from(e: Error) -> Self {
        Self::Smtp(e)
    }
}

pub struct SmtpPool {
    config: SmtpConfig,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    slots: Semaphore,
}

impl SmtpPool {
    pub fn new(config: SmtpConfig, size: usize) -> Self {
        Self { config, hello: ClientId::default(), idle: Mutex::new(Vec::new()), slots: Semaphore::new(size) }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let c = &self.config;
        let tcp = TcpStream::connect((c.host.as_str(), c.port)).await.map_err(SendError::Connect)?;
        tcp.set_nodelay(true).map_err(SendError::Connect)?;
        let stream: Box<dyn AsyncTokioStream> = match &c.security {
            Security::Implicit { connector, server_name } => {
                let tls = connector.connect(server_name.clone(), tcp).await.map_err(SendError::Tls)?;
                Box::new(ImplicitTls(tls))
            }
            _ => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
        if let Security::StartTls { parameters, required } = &c.security
            && (*required || conn.can_starttls())
        {
            conn.starttls(parameters.clone(), &self.hello).await?;
        }
        if let Some(credentials) = &c.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await?;
        }
        Ok(conn)
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < MAX_IDLE {
                return Some(conn);
            }
        }
        None
    }

    async fn send_on(
        &self,
        mut conn: AsyncSmtpConnection,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<(), SendError> {
        let result = conn.send(envelope, message).await.map(|_| ()).map_err(SendError::Smtp);
        if result.is_ok() && !conn.has_broken() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push((conn, Instant::now()));
            }
        } else {
            conn.abort().await;
        }
        result
    }

    async fn send_once(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        if let Some(conn) = self.take_idle() {
            match self.send_on(conn, envelope, message).await {
                // A pooled connection the relay had closed fails before the
                // relay accepted anything (no reply code): try a fresh one.
                Err(SendError::Smtp(e)) if e.status().is_none() && !e.is_client() => {}
                other => return other,
            }
        }
        let conn = self.connect().await?;
        self.send_on(conn, envelope, message).await
    }

    /// Sends one message on a pooled connection (at most `size` at once).
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        // The semaphore is never closed; a closed one would mean shutdown.
        let Ok(_slot) = self.slots.acquire().await else { return Err(SendError::Timeout) };
        tokio::time::timeout(self.config.timeout, self.send_once(envelope, message))
            .await
            .unwrap_or(Err(SendError::Timeout))
    }
}

/// Shared handle.
pub type SharedPool = Arc<SmtpPool>;
