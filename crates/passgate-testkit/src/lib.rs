//! What passgate's tests share, so that no test suite makes its own:
//!
//! - [`TempDatabase`]: a fresh database on either backend — a SQLite file
//!   in the temporary directory, or a PostgreSQL database created from
//!   `PASSGATE_TEST_POSTGRES_URL` — removed when dropped, also when the
//!   test failed;
//! - [`conformance`]: the runner that makes one test of every check of the
//!   store conformance suite, for a backend's test binary;
//! - [`smtp`]: a real SMTP server on loopback that records what it is sent
//!   (for the server's tests and the example app's browser tests);
//! - [`DevPassgate`]: a real `passgate dev` process, for the tests of the
//!   SDK and the example app.
//!
//! Real databases only: nothing here mocks a store.

pub mod conformance;
mod database;
mod dev_server;
pub mod smtp;

pub use database::{Backend, TempDatabase, postgres_admin_url};
pub use dev_server::{DevPassgate, passgate_binary};
