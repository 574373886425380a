//! The passgate SDK for an app's backend.
//!
//! passgate signs your users in by email (a magic link or a one-time code)
//! and your backend verifies every login server to server. This crate is
//! the backend's half:
//!
//! - [`Client`]: a typed async client for every endpoint of passgate's HTTP
//!   API, with the wire types of [`passgate_api_types`] (re-exported as
//!   [`types`]), errors as an [`Error`] whose [`ApiError::code`] is the
//!   API's stable code, retries only where they are safe, and timeouts.
//! - [`JwtVerifier`]: checks passgate's result JWTs against the server's
//!   JWKS with every rule of the contract pinned (EdDSA only, `kid`
//!   required, no key-bearing headers, `aud`, `iss`, `exp`/`nbf`/`iat`).
//! - [`axum`](crate::axum) (feature `axum`, on by default): server-side
//!   sessions in `__Host-` cookies with a SQLite and a PostgreSQL store, the
//!   scanner-safe callback (GET renders, only a CSRF-checked POST verifies),
//!   policy hooks, and an organization guard.
//!
//! ```no_run
//! use passgate_client::{Client, SecretKey, types::StartLoginRequest};
//!
//! # async fn run() -> Result<(), passgate_client::Error> {
//! let client = Client::new("http://127.0.0.1:8080", SecretKey::new("sk_test_…"))?;
//! let started = client
//!     .start_login(&StartLoginRequest {
//!         email: "ada@example.com".into(),
//!         validation_url: "http://localhost:3000/auth/callback".into(),
//!         state: None,
//!         code_challenge: None,
//!         include_code: Some(true),
//!         ip_address: None,
//!         user_agent: None,
//!         locale: None,
//!     })
//!     .await?;
//! println!("login {} expires at {}", started.login_id, started.expires_at);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod client;
mod error;
mod jwt;
mod pkce;
mod random;
mod secret;

#[cfg(feature = "axum")]
pub mod axum;

pub use client::{Client, ClientBuilder, StampedRequest};
pub use error::{ApiError, Error};
pub use jwt::{Claims, JwtError, JwtVerifier, KeySet, verify_with_keys};
pub use pkce::Pkce;
pub use secret::SecretKey;

/// The wire types of passgate's HTTP API (the `passgate-api-types` crate).
pub use passgate_api_types as types;
