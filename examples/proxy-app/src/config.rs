//! Settings from the environment.

use std::sync::Arc;

use passgate_client::SecretKey;
use passgate_client::axum::{PostgresSessionStore, SessionStore, SqliteSessionStore};

/// What the app needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PASSGATE_URL` (default `http://127.0.0.1:8080`, where `passgate dev` listens).
    pub passgate_url: String,
    /// `PASSGATE_API_KEY`: the project's secret key (required).
    pub api_key: SecretKey,
    /// `APP_LISTEN` (default `127.0.0.1:3000`).
    pub listen: String,
    /// `APP_PUBLIC_URL` (default `http://` + the address listened on).
    pub public_url: Option<String>,
    /// `APP_DATABASE_URL` (default `sqlite://proxy-app.db` in the working directory).
    pub database_url: String,
}

impl Config {
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let api_key = var("PASSGATE_API_KEY").ok_or(
            "PASSGATE_API_KEY is not set: give it the project's secret key (passgate dev prints one: \"Secret key: sk_test_…\")",
        )?;
        let listen = var("APP_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".into());
        let public_url = var("APP_PUBLIC_URL");
        if let Some(url) = &public_url {
            let parsed = url::Url::parse(url).map_err(|e| format!("APP_PUBLIC_URL {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.path() != "/" {
                return Err(format!("APP_PUBLIC_URL {url:?} must be an http(s) origin without a path"));
            }
        }
        Ok(Self {
            passgate_url: var("PASSGATE_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into()),
            api_key: SecretKey::new(api_key),
            listen,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
            database_url: var("APP_DATABASE_URL").unwrap_or_else(|| "sqlite://proxy-app.db".into()),
        })
    }
}

/// The session store `APP_DATABASE_URL` names: `sqlite://PATH` or `postgres://…`.
pub async fn open_session_store(url: &str) -> Result<Arc<dyn SessionStore>, String> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = SqliteSessionStore::open(path).map_err(|e| format!("APP_DATABASE_URL {url}: {e}"))?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresSessionStore::connect(url).await.map_err(|e| format!("APP_DATABASE_URL: {e}"))?;
        Ok(Arc::new(store))
    } else {
        Err(format!("APP_DATABASE_URL {url:?} must start with sqlite:// or postgres://"))
    }
}
