//! Runs the store conformance suite (`passgate_store::conformance`) as a
//! test binary of its own (`harness = false`): one test per check, named
//! `area::check`, plus the backend's own tests, with libtest's command line
//! (so `cargo test` and `cargo nextest` filter and list them as usual).
//!
//! The list of checks comes from the suite itself, and a test of its own
//! fails if a check declared in the suite's source is missing from it.

use std::future::Future;

use libtest_mimic::{Arguments, Failed, Trial};
use passgate_store::Store;
use passgate_store::conformance::{all, missing_checks};

/// A test running `test` on a fresh multi-threaded runtime (as
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` would).
pub fn trial<F, Fut>(name: impl Into<String>, test: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    Trial::test(name, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(test());
        Ok(())
    })
}

/// Runs every conformance check on stores made by `fresh` (a new, migrated
/// store each time, and a guard that removes its database when dropped),
/// then the backend's `own` tests; exits with the run's status.
pub fn run<S, G, F, Fut>(fresh: F, own: Vec<Trial>) -> !
where
    S: Store,
    G: Send + 'static,
    F: Fn() -> Fut + Copy + Send + 'static,
    Fut: Future<Output = (S, G)> + Send + 'static,
{
    let mut trials: Vec<Trial> = all::<S>()
        .into_iter()
        .map(|check| {
            trial(check.name, move || async move {
                let (store, _guard) = fresh().await;
                (check.run)(store).await;
            })
        })
        .collect();
    trials.push(Trial::test("conformance::every_declared_check_runs", || match missing_checks::<S>() {
        None => Ok(()),
        Some(missing) => Err(missing.into()),
    }));
    trials.extend(own);
    libtest_mimic::run(&Arguments::from_args(), trials).exit()
}
