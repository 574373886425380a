//! Integration tests of the passgate server: one binary, modules by topic.
//! `router` calls the real router in process (tower's `oneshot`) for fast
//! HTTP-level checks; the other in-process tests run the real router and
//! outbox worker on a real socket;
//! `process` runs the real `passgate` binary, and `examples` the example apps
//! in examples/ against it. All mail goes over real SMTP to
//! a sink on loopback; all data goes to real databases: SQLite files, or
//! with `PASSGATE_TEST_BACKEND=postgres` a fresh PostgreSQL database per test
//! (`scale_out` always uses PostgreSQL).

mod support;

mod auth_flow;
mod connections;
mod dev;
mod emails;
mod events;
mod examples;
mod http_hygiene;
mod invites;
mod otp;
mod outbox;
mod process;
mod retention;
mod router;
mod scale_out;
mod security;
mod webhooks;
