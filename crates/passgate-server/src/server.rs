//! Putting a server together: from checked settings to a running process,
//! and the same assembly with injected parts for tests.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use passgate_core::secret::ServerSecret;
use passgate_core::{Clock, ProjectId};
use passgate_store::{Database, Store, StoreError};
use passgate_store_postgres::{PgStore, PoolSettings};
use passgate_store_sqlite::SqliteStore;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{App, AppState, router};
use crate::config::Settings;
use crate::devmode;
use crate::http::serve::{ConnectionLimits, serve};
use crate::keys::{KeyError, KeyRing, ensure_signing_key};
use crate::mail::EmailPayload;
use crate::mail::outbox::{Outbox, OutboxConfig};
use crate::mail::templates::{TemplateError, Templates};
use crate::mail::transport::{DevMailbox, Mailer, SmtpUrlError};
use crate::metrics::{self, Metrics};
use crate::sweeper::{SweepConfig, Sweeper};
use crate::webhooks::WebhookConfig;
use crate::webhooks::sender::WebhookSender;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // Database errors show the URL redacted and the cause scrubbed of every
    // credential the URL holds (see `StartError::database`).
    #[error("database {url}: {detail}")]
    Database { url: String, detail: String },
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
    #[error("cannot listen on {addr} ({setting}): {source}")]
    Listen { setting: &'static str, addr: String, source: std::io::Error },
    #[error("dev mode: {0}")]
    Dev(String),
    #[error("webhook client: {0}")]
    Webhooks(String),
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
    /// How long clients may take and how many connections they may hold.
    pub connections: ConnectionLimits,
    pub webhooks: WebhookConfig,
    pub retention: SweepConfig,
}

/// How many of the oldest queued emails a start opens to check the secret.
const QUEUED_EMAILS_CHECKED: u32 = 100;

/// Refuses to go on when the secret cannot open what the database holds
/// sealed under it: the current signing key, or queued emails. Otherwise
/// the server would start, accept logins, and answer verify and the JWKS
/// with 500s, while the emails it owes fail one by one.
async fn check_secret_opens_what_is_stored<S: Store>(store: &S, secret: &ServerSecret) -> Result<(), StartError> {
    match crate::keys::check_current_key_opens(store, secret).await {
        // A first start: there is no key yet, and one is made with this secret.
        Ok(()) | Err(KeyError::NoCurrentKey) => {}
        Err(e) => return Err(e.into()),
    }
    let queued = store.queued_payloads(QUEUED_EMAILS_CHECKED).await.map_err(KeyError::Store)?;
    let sealed_otherwise = queued.iter().filter(|sealed| EmailPayload::open(secret, sealed).is_err()).count();
    if sealed_otherwise > 0 {
        return Err(StartError::Secret(format!(
            "{sealed_otherwise} of the {} oldest queued emails cannot be opened with PASSGATE_SECRET_KEY: \
             start with the secret they were sealed with, or, while rotating, set that one as \
             PASSGATE_SECRET_KEY_PREVIOUS",
            queued.len()
        )));
    }
    Ok(())
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
        connections: parts.connections,
        webhooks: parts.webhooks,
        retention: parts.retention,
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
    let webhooks = WebhookSender::new(
        app.store.clone(),
        app.clock.clone(),
        app.secret.clone(),
        app.webhooks.clone(),
        app.metrics.clone(),
    )
    .map_err(|e| StartError::Webhooks(e.to_string()))?;
    let webhook_worker = tokio::spawn(webhooks.run(stop_rx.clone()));
    let sweeper = Sweeper::new(app.store.clone(), app.clock.clone(), app.retention, app.metrics.clone());
    let sweeper = tokio::spawn(sweeper.run(stop_rx.clone()));
    let scrapes = metrics_listener.map(|listener| {
        let mut stop = stop_rx;
        let stopped = async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        };
        tokio::spawn(serve(listener, metrics::router(app.metrics.clone()), app.connections, stopped))
    });
    let limits = app.connections;
    let served = serve(listener, router(app), limits, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = webhook_worker.await;
    let _ = sweeper.await;
    if let Some(scrapes) = scrapes {
        let _ = scrapes.await;
    }
    served.map_err(StartError::Serve)
}

/// The listening sockets systemd passed (socket activation: `LISTEN_FDS`
/// for this very process, as `LISTEN_PID` says), in order: the public
/// listener, then optionally the metrics listener. Empty when the server
/// was not socket-activated. A `LISTEN_FDS` meant for another process (its
/// `LISTEN_PID` is not ours, or absent) is ignored rather than trusted.
fn sockets_from_systemd() -> std::io::Result<Vec<TcpListener>> {
    let for_us = std::env::var("LISTEN_PID").ok().and_then(|pid| pid.parse::<u32>().ok()) == Some(std::process::id());
    if !for_us {
        return Ok(Vec::new());
    }
    let mut fds = listenfd::ListenFd::from_env();
    let mut listeners = Vec::new();
    for index in 0..fds.len().min(2) {
        let Some(listener) = fds.take_tcp_listener(index)? else { continue };
        listener.set_nonblocking(true)?;
        listeners.push(TcpListener::from_std(listener)?);
    }
    if fds.len() > 2 {
        tracing::warn!(
            sockets = fds.len(),
            "systemd passed more than two sockets; the first is the public listener, the second the metrics listener, the rest are not used"
        );
    }
    Ok(listeners)
}

/// Listens for SIGTERM and Ctrl-C (SIGINT) from the moment it is called,
/// and resolves when one arrives. The handlers are installed here, not on
/// the future's first poll: a signal sent right after the server said it
/// listens, before `run` polls this, must start a drain, not kill the
/// process with the signal's default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (mut terminate, mut interrupt) = handlers;
            let on = |s: &mut Option<tokio::signal::unix::Signal>| {
                let mut s = s.take();
                async move {
                    match s.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
            };
            tokio::select! {
                () = on(&mut terminate) => {}
                () = on(&mut interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested; draining");
    }
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

/// A database URL fit to print: every credential replaced, wherever it sits
/// (the password of the user part, or a query parameter such as
/// `?password=…` or `sslpassword=…`; in a `key=value` connection string,
/// the `password` value).
pub fn redacted_url(url: &str) -> String {
    const MASK: &str = "****";
    let secret_name = |name: &str| {
        let name = name.to_ascii_lowercase();
        ["pass", "secret", "token"].iter().any(|word| name.contains(word))
    };
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some(MASK));
            }
            if u.query().is_some() {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let shown = if secret_name(&k) { MASK.to_string() } else { v.into_owned() };
                        (k.into_owned(), shown)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        // Not a URL: a `key=value` connection string, or something garbled.
        // Keep only what follows the last `@`, and mask secret values.
        Err(_) => url
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(|word| match word.split_once('=') {
                Some((key, _)) if secret_name(key) => format!("{key}={MASK}"),
                _ => word.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A database as start-up lines and the CLI name it: a SQLite file by its
/// absolute path (`sqlite:///abs/path.db`), any other URL redacted.
pub fn shown_database(url: &str) -> String {
    if let Ok(path) = passgate_store_sqlite::database_path(url) {
        let absolute = std::path::absolute(&path).unwrap_or(path);
        return format!("sqlite://{}", absolute.display());
    }
    redacted_url(url)
}

impl StartError {
    /// A database error as it may be printed: the URL redacted, and the
    /// cause's whole chain with every credential of the URL taken out (a
    /// driver's message may quote the value it could not use).
    pub fn database(url: &str, source: &StoreError) -> Self {
        let mut detail = crate::http::error::cause_chain(source);
        for secret in url_secrets(url) {
            detail = detail.replace(&secret, "****");
        }
        Self::Database { url: redacted_url(url), detail }
    }
}

/// The credentials a URL holds: its password and its secret-looking query
/// values, raw and decoded (at least 4 characters, so masking them cannot
/// garble ordinary words).
fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some(password) = parsed.password() {
            secrets.push(password.to_string());
            if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                secrets.push(decoded.into_owned());
            }
        }
        for (name, value) in parsed.query_pairs() {
            let name = name.to_ascii_lowercase();
            if ["pass", "secret", "token"].iter().any(|word| name.contains(word)) {
                secrets.push(value.into_owned());
            }
        }
    }
    secrets.retain(|s| s.len() >= 4);
    secrets
}

/// Opens (creating if missing) and migrates a SQLite database.
pub async fn open_sqlite(url: &str) -> Result<SqliteStore, StartError> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let file = path.split('?').next().unwrap_or_default();
        if let Some(parent) = Path::new(file).parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StartError::database(url, &StoreError::database(e)))?;
        }
    }
    let db_err = |source| StartError::database(url, &source);
    let store = SqliteStore::connect(url).await.map_err(db_err)?;
    store.migrate().await.map_err(db_err)?;
    Ok(store)
}

/// Connects to and migrates a PostgreSQL database (migrations take an
/// advisory lock, so instances starting together apply them once).
pub async fn open_postgres(url: &str, pool: PoolSettings) -> Result<PgStore, StartError> {
    // Errors name the host and database, never a credential.
    let db_err = |source| StartError::database(url, &source);
    let store = PgStore::connect(url, pool).await.map_err(db_err)?;
    store.migrate().await.map_err(db_err)?;
    if !store.autovacuum_is_on().await.map_err(db_err)? {
        tracing::warn!(
            "PostgreSQL runs with autovacuum off: what the retention sweeper deletes is never reused, and the \
             database grows as if nothing were swept; turn it on (ALTER SYSTEM SET autovacuum = on)"
        );
    }
    Ok(store)
}

/// The server secret from the settings, or in dev mode from the dev folder's `secret`.
pub fn server_secret(settings: &Settings) -> Result<ServerSecret, StartError> {
    let previous = settings.secret_key_previous.as_ref().map(|s| s.expose_secret().to_string());
    match &settings.secret_key {
        Some(key) => ServerSecret::from_base64(key.expose_secret(), previous.as_deref()),
        None if settings.dev => {
            let text = devmode::load_or_create_secret(&settings.dev_dir).map_err(|e| StartError::Dev(e.to_string()))?;
            ServerSecret::from_base64(&text, previous.as_deref())
        }
        None => return Err(StartError::Secret("missing".to_string())),
    }
    .map_err(|e| StartError::Secret(e.to_string()))
}

/// What `passgate dev` was asked to do besides serving.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevOptions {
    /// Forget the dev project's logins first (`--reset-limits`).
    pub reset_limits: bool,
}

/// `passgate serve` / `passgate dev`: picks the backend from the URL, then
/// runs the server monomorphised for it.
pub async fn serve_from_settings(settings: Settings, dev: DevOptions) -> Result<(), StartError> {
    // Before the database is opened: a new SQLite dev database is created
    // inside the dev folder, which must not then pass for an existing one.
    let dev_dir_existed = settings.dev_dir.join("secret").is_file();
    match Backend::of(&settings.database_url)? {
        Backend::Sqlite => serve_with(open_sqlite(&settings.database_url).await?, settings, dev, dev_dir_existed).await,
        Backend::Postgres => {
            let store = open_postgres(&settings.database_url, settings.pool).await?;
            serve_with(store, settings, dev, dev_dir_existed).await
        }
    }
}

async fn serve_with<S: Store>(
    store: S,
    settings: Settings,
    dev: DevOptions,
    dev_dir_existed: bool,
) -> Result<(), StartError> {
    let secret = Arc::new(server_secret(&settings)?);
    // Before anything listens: a server that cannot open its own keys and
    // queued emails must not start answering.
    check_secret_opens_what_is_stored(&store, &secret).await?;
    let clock: Arc<dyn Clock> = Arc::new(crate::SystemClock);
    let dev_mailbox = settings.dev.then(|| DevMailbox::new(clock.now()));
    let mailer = Mailer::new(
        settings.smtp_url.as_ref(),
        settings.smtp_ca_pem.as_deref(),
        settings.email_from.clone(),
        dev_mailbox,
    )?;
    if mailer.sends_in_clear() {
        tracing::warn!(
            "smtp_url has tls=none: emails (which hold live sign-in links) travel to the relay unencrypted; use it only for a relay on this machine"
        );
    }
    if settings.webhook_allow_private && !settings.dev {
        tracing::warn!(
            "webhook_allow_private is on: webhooks may be sent to private and loopback addresses and over plain http; use it only for development"
        );
    }
    let templates = Arc::new(Templates::load(settings.templates_dir.as_deref())?);
    let outbox = OutboxConfig { lease: settings.outbox_lease, ..OutboxConfig::default() };
    let activated = sockets_from_systemd().map_err(|source| StartError::Listen {
        setting: "LISTEN_FDS",
        addr: "the sockets systemd passed".to_string(),
        source,
    })?;
    let socket_activated = !activated.is_empty();
    let mut activated = activated.into_iter();
    let listener = match activated.next() {
        Some(listener) => listener,
        None => TcpListener::bind(settings.listen).await.map_err(|source| StartError::Listen {
            setting: "PASSGATE_LISTEN",
            addr: settings.listen.to_string(),
            source,
        })?,
    };
    let local = listener.local_addr().map_err(|source| StartError::Listen {
        setting: "PASSGATE_LISTEN",
        addr: settings.listen.to_string(),
        source,
    })?;
    let metrics_listener = match (activated.next(), settings.metrics_listen) {
        // A second socket from systemd is the metrics listener.
        (Some(listener), _) => Some(listener),
        (None, None) => None,
        (None, Some(addr)) => match TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            // `passgate dev` needs nothing set up: a second dev server, or a
            // local Prometheus on 9090, must not stop it. `serve` refuses,
            // as for its main listener: an operator asked for metrics there.
            Err(e) if settings.dev => {
                tracing::warn!(metrics_listen = %addr, error = %e, "cannot listen for metrics; serving without them");
                None
            }
            Err(source) => {
                return Err(StartError::Listen { setting: "PASSGATE_METRICS_LISTEN", addr: addr.to_string(), source });
            }
        },
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    // The default public URL names the configured address; a server on a
    // port chosen at bind time, or on a socket from systemd, names the real one.
    let default_public_url = settings.public_url == format!("http://{}", settings.listen);
    let public_url = if default_public_url && (settings.listen.port() == 0 || socket_activated) {
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
        connections: settings.connections,
        webhooks: WebhookConfig {
            allow_private: settings.webhook_allow_private,
            lease: settings.outbox_lease,
            ..WebhookConfig::default()
        },
        retention: settings.retention,
    };
    let app = assemble(store.clone(), parts).await?;
    if settings.dev {
        let key = devmode::dev_api_key(&secret);
        let project_id = ProjectId::from_trusted(devmode::DEV_PROJECT_ID);
        devmode::ensure_dev_project(&store, &key, clock.now()).await.map_err(|e| StartError::Dev(e.to_string()))?;
        let limits = if dev.reset_limits {
            let forgotten = store.forget_dev_logins(&project_id).await.map_err(|e| StartError::Dev(e.to_string()))?;
            format!("reset ({forgotten} earlier sign-in attempts forgotten)")
        } else {
            "as in production (passgate dev --reset-limits starts them from zero)".to_string()
        };
        let cwd = std::env::current_dir().ok();
        // Printed, not logged: the one place the dev key is meant to appear.
        println!(
            "\npassgate dev is running\n  API:         {public_url}/api/v2\n  Mailbox:     {public_url}/_dev/mailbox\n  Callback:    {public_url}/_dev/callback (a validationUrl that finishes sign-ins in the browser)\n  Project:     {}\n  Secret key:  {}\n  Redirects:   http://localhost:* and http://127.0.0.1:* (any port)\n  Limits:      {limits}\n  Folder:      {}\n  Data:        {}\n",
            devmode::DEV_PROJECT_ID,
            key.expose(),
            devmode::describe_dev_dir(&settings.dev_dir, dev_dir_existed, cwd.as_deref()),
            shown_database(&settings.database_url),
        );
    }
    let metrics_addr = metrics_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    let database = shown_database(&settings.database_url);
    // Before the line that says we listen: from then on, SIGTERM drains.
    let shutdown = shutdown_signal();
    tracing::info!(listen_addr = %local, public_url = %public_url, metrics_addr = %metrics_addr, database = %database, dev = settings.dev, socket_activated, "passgate listening");
    let result = run(app, listener, metrics_listener, shutdown).await;
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
        for hidden in [
            "postgres://passgate@db.internal/passgate?password=hunter2",
            "postgres://db.internal/passgate?sslmode=require&sslpassword=hunter2&user=passgate",
            "postgres://db.internal/passgate?PASSWORD=hunter2",
            "host=db.internal user=passgate password=hunter2 dbname=passgate",
        ] {
            let shown = redacted_url(hidden);
            assert!(!shown.contains("hunter2") && shown.contains("****"), "{hidden} shown as {shown}");
        }
        let kept = redacted_url("postgres://db.internal/passgate?sslmode=require&user=passgate");
        assert_eq!(kept, "postgres://db.internal/passgate?sslmode=require&user=passgate");
    }

    #[test]
    fn the_backend_is_chosen_from_the_scheme() {
        assert_eq!(Backend::of("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::of("postgres://h/db").ok(), Some(Backend::Postgres));
        assert_eq!(Backend::of("postgresql://h/db").ok(), Some(Backend::Postgres));
        assert!(Backend::of("mysql://h/db").is_err());
    }
}
