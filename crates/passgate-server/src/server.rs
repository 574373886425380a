//! Putting a server together: from checked settings to a running process,
//! and the same assembly with injected parts for tests.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use passgate_core::Clock;
use passgate_core::secret::ServerSecret;
use passgate_store::{Database, Store, StoreError};
use passgate_store_postgres::{PgStore, PoolSettings};
use passgate_store_sqlite::SqliteStore;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{App, AppState, router, serve};
use crate::config::Settings;
use crate::devmode;
use crate::keys::{KeyError, KeyRing, ensure_signing_key};
use crate::mail::outbox::{Outbox, OutboxConfig};
use crate::mail::templates::{TemplateError, Templates};
use crate::mail::transport::{DevMailbox, Mailer, SmtpUrlError};
use crate::metrics::{self, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // Database errors show `redacted_url`, never a password.
    #[error("database {url}: {source}")]
    Database { url: String, source: StoreError },
    #[error("{0}")]
    UnsupportedDatabase(String),
    #[error("cannot prepare the JWT signing key: {0}")]
    Keys(#[from] KeyError),
    #[error("email templates: {0}")]
    Templates(#[from] TemplateError),
    #[error("smtp_url: {0}")]
    Smtp(#[from] SmtpUrlError),
    #[error("secret_key: {0}")]
    Secret(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("dev mode: {0}")]
    Dev(String),
    #[error("server stopped: {0}")]
    Serve(std::io::Error),
}

/// The parts of a server that are not the store.
pub struct Parts {
    pub clock: Arc<dyn Clock>,
    pub secret: Arc<ServerSecret>,
    pub public_url: String,
    pub templates: Arc<Templates>,
    pub mailer: Mailer,
    pub outbox: OutboxConfig,
    /// How often signing keys are reread ([`crate::keys::REFRESH_EVERY`] in production).
    pub key_refresh: std::time::Duration,
}

/// Builds the shared state (and makes sure a signing key exists).
pub async fn assemble<S: Store>(store: S, parts: Parts) -> Result<App<S>, StartError> {
    ensure_signing_key(&store, &parts.secret, parts.clock.now()).await?;
    let metrics = Arc::new(Metrics::default());
    let outbox = Outbox::new(
        store.clone(),
        parts.clock.clone(),
        parts.secret.clone(),
        parts.templates,
        parts.mailer.clone(),
        parts.outbox,
        metrics.clone(),
    );
    Ok(Arc::new(AppState {
        store,
        clock: parts.clock,
        secret: parts.secret,
        keys: KeyRing::refreshing_every(parts.key_refresh),
        public_url: parts.public_url,
        outbox,
        dev_mailbox: parts.mailer.dev_mailbox().cloned(),
        metrics,
    }))
}

/// Runs the HTTP server, the metrics listener (if any) and the outbox
/// worker until `shutdown` completes; then stops accepting, drains in-flight
/// requests, and lets the worker finish the emails it is sending.
pub async fn run<S: Store>(
    app: App<S>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(app.outbox.clone().run(stop_rx.clone()));
    let scrapes = metrics_listener.map(|listener| {
        let mut stop = stop_rx;
        let stopped = async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        };
        tokio::spawn(serve(listener, metrics::router(app.metrics.clone()), stopped))
    });
    let served = serve(listener, router(app), shutdown).await;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    if let Some(scrapes) = scrapes {
        let _ = scrapes.await;
    }
    served.map_err(StartError::Serve)
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested; draining");
}

/// The storage backend a database URL names. The one place the backend is
/// chosen; everything after it is generic over the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Self, StartError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            other => Err(StartError::UnsupportedDatabase(format!(
                "database_url: {other:?} is not a supported database; use sqlite://path/to/file.db or postgres://..."
            ))),
        }
    }
}

/// A database URL fit to print: the password replaced.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => url.split('@').next_back().map_or_else(String::new, |rest| format!("…@{rest}")),
    }
}

/// Opens (creating if missing) and migrates a SQLite database.
pub async fn open_sqlite(url: &str) -> Result<SqliteStore, StartError> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let file = path.split('?').next().unwrap_or_default();
        if let Some(parent) = Path::new(file).parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StartError::Database { url: url.to_string(), source: StoreError::database(e) })?;
        }
    }
    let db_err = |source| StartError::Database { url: url.to_string(), source };
    let store = SqliteStore::connect(url).await.map_err(db_err)?;
    store.migrate().await.map_err(db_err)?;
    Ok(store)
}

/// Connects to and migrates a PostgreSQL database (migrations take an
/// advisory lock, so instances starting together apply them once).
pub async fn open_postgres(url: &str, pool: PoolSettings) -> Result<PgStore, StartError> {
    // Errors name the host and database, never the password.
    let shown = redacted_url(url);
    let db_err = |source| StartError::Database { url: shown.clone(), source };
    let store = PgStore::connect(url, pool).await.map_err(db_err)?;
    store.migrate().await.map_err(db_err)?;
    Ok(store)
}

/// The server secret from the settings, or in dev mode from `./.passgate/secret`.
pub fn server_secret(settings: &Settings) -> Result<ServerSecret, StartError> {
    let previous = settings.secret_key_previous.as_ref().map(|s| s.expose_secret().to_string());
    match &settings.secret_key {
        Some(key) => ServerSecret::from_base64(key.expose_secret(), previous.as_deref()),
        None if settings.dev => {
            let text = devmode::load_or_create_secret(Path::new(devmode::DEV_DIR))
                .map_err(|e| StartError::Dev(e.to_string()))?;
            ServerSecret::from_base64(&text, previous.as_deref())
        }
        None => return Err(StartError::Secret("missing".to_string())),
    }
    .map_err(|e| StartError::Secret(e.to_string()))
}

/// `passgate serve` / `passgate dev`: picks the backend from the URL, then
/// runs the server monomorphised for it.
pub async fn serve_from_settings(settings: Settings) -> Result<(), StartError> {
    match Backend::of(&settings.database_url)? {
        Backend::Sqlite => serve_with(open_sqlite(&settings.database_url).await?, settings).await,
        Backend::Postgres => {
            let store = open_postgres(&settings.database_url, settings.pool).await?;
            serve_with(store, settings).await
        }
    }
}

async fn serve_with<S: Store>(store: S, settings: Settings) -> Result<(), StartError> {
    let secret = Arc::new(server_secret(&settings)?);
    let clock: Arc<dyn Clock> = Arc::new(crate::SystemClock);
    let dev_mailbox = settings.dev.then(DevMailbox::default);
    let mailer = Mailer::new(
        settings.smtp_url.as_ref(),
        settings.smtp_ca_pem.as_deref(),
        settings.email_from.clone(),
        dev_mailbox,
    )?;
    let templates = Arc::new(Templates::load(settings.templates_dir.as_deref())?);
    let outbox = OutboxConfig { lease: settings.outbox_lease, ..OutboxConfig::default() };
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Listen { addr: settings.listen.to_string(), source })?;
    let local =
        listener.local_addr().map_err(|source| StartError::Listen { addr: settings.listen.to_string(), source })?;
    let metrics_listener = match settings.metrics_listen {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            // `passgate dev` needs nothing set up: a second dev server, or a
            // local Prometheus on 9090, must not stop it. `serve` refuses,
            // as for its main listener: an operator asked for metrics there.
            Err(e) if settings.dev => {
                tracing::warn!(metrics_listen = %addr, error = %e, "cannot listen for metrics; serving without them");
                None
            }
            Err(source) => return Err(StartError::Listen { addr: addr.to_string(), source }),
        },
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let public_url = if settings.listen.port() == 0 && settings.public_url == format!("http://{}", settings.listen) {
        format!("http://{local}")
    } else {
        settings.public_url.clone()
    };
    let parts = Parts {
        clock: clock.clone(),
        secret: secret.clone(),
        public_url: public_url.clone(),
        templates,
        mailer,
        outbox,
        key_refresh: crate::keys::REFRESH_EVERY,
    };
    let app = assemble(store.clone(), parts).await?;
    if settings.dev {
        let key = devmode::dev_api_key(&secret);
        devmode::ensure_dev_project(&store, &key, clock.now()).await.map_err(|e| StartError::Dev(e.to_string()))?;
        // Printed, not logged: the one place the dev key is meant to appear.
        println!(
            "\npassgate dev is running\n  API:         {public_url}/api/v2\n  Mailbox:     {public_url}/_dev/mailbox\n  Project:     {}\n  Secret key:  {}\n  Redirects:   http://localhost:* and http://127.0.0.1:* (any port)\n  Data:        {}\n",
            devmode::DEV_PROJECT_ID,
            key.expose(),
            redacted_url(&settings.database_url),
        );
    }
    let metrics_addr = metrics_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    tracing::info!(listen_addr = %local, public_url = %public_url, metrics_addr = %metrics_addr, dev = settings.dev, "passgate listening");
    let result = run(app, listener, metrics_listener, shutdown_signal()).await;
    store.close().await;
    tracing::info!("passgate stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_database_urls_never_show_the_password() {
        let shown = redacted_url("postgres://passgate:hunter2@db.internal:5432/passgate");
        assert_eq!(shown, "postgres://passgate:****@db.internal:5432/passgate");
        assert_eq!(redacted_url("sqlite://.passgate/passgate.db"), "sqlite://.passgate/passgate.db");
        assert!(!redacted_url("not a url :hunter2@host").contains("hunter2"));
    }

    #[test]
    fn the_backend_is_chosen_from_the_scheme() {
        assert_eq!(Backend::of("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::of("postgres://h/db").ok(), Some(Backend::Postgres));
        assert_eq!(Backend::of("postgresql://h/db").ok(), Some(Backend::Postgres));
        assert!(Backend::of("mysql://h/db").is_err());
    }
}
