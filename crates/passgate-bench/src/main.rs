//! `hello-axum ADDR`: the smallest axum JSON service (one route, no state,
//! no database), built with the same axum and tokio as passgate. Its
//! requests per second on the benchmark machine are the ceiling that
//! BENCHMARKS.md compares passgate's HTTP rate with.

use axum::Json;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".to_string());
    let app = axum::Router::new().route("/hello", get(|| async { Json(serde_json::json!({ "hello": "world" })) }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
