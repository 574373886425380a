//! The backend-proxy example: a small app on the passgate SDK. Its pages
//! are plain server-rendered HTML; the only script is the one that holds
//! the browser's session key for the one-time-code sign-in. See README.md.

mod config;
mod pages;
mod routes;

use std::net::SocketAddr;

use passgate_client::axum::{Auth, AuthConfig, Policy, Sessions};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("APP_LOG").unwrap_or_else(|_| "proxy_app=info,warn".into()),
        )
        // Standard output carries only the "listening" line.
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run().await {
        eprintln!("proxy-app: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let config = config::Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{local}"));
    let sessions = Sessions::from_shared(config::open_session_store(&config.database_url).await?);
    let policy = Policy::new().onboarding("/onboarding");
    let auth = Auth::connect(
        AuthConfig {
            passgate_url: config.passgate_url.clone(),
            api_key: config.api_key.clone(),
            app_url: public_url.clone(),
        },
        sessions,
        policy,
    )
    .await
    .map_err(|e| format!("cannot reach passgate at {} with this key: {e}", config.passgate_url))?;
    // The first line on standard output says where the app is (tests read it).
    println!("proxy-app listening on http://{local} (public URL {public_url})");
    tracing::info!(passgate = %config.passgate_url, sessions = %config.database_url, "ready");
    let app = routes::router(routes::AppState::new(auth));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
