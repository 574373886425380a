//! The HTTP edge: thin handlers that parse into domain types, call one
//! service, and map the outcome; extractors; errors; request ids; and how
//! connections are served (timeouts, the connection cap, shutdown).

pub mod auth;
pub mod dev;
pub mod error;
pub mod events;
pub mod extract;
pub mod inputs;
pub mod invites;
pub mod ops;
pub mod organizations;
pub mod otp;
pub mod request_id;
pub mod serve;
pub mod session;
pub mod users;
pub mod webhooks;
