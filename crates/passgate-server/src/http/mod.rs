//! The HTTP edge: thin handlers that parse into domain types, call one store
//! method, and map the outcome; extractors; errors; request ids.

pub mod auth;
pub mod dev;
pub mod error;
pub mod extract;
pub mod ops;
pub mod request_id;
