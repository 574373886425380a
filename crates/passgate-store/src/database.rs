//! The database itself: its schema and its connections.

use std::future::Future;

use crate::StoreResult;

/// The lifecycle every backend offers beside its areas.
pub trait Database: Clone + Send + Sync + 'static {
    /// Applies pending migrations (safe to call at every start).
    fn migrate(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Closes the connections, waiting for those in use to be returned.
    fn close(&self) -> impl Future<Output = ()> + Send;

    /// Whether the database answers and every migration this build knows
    /// has been applied (for `/readyz`).
    fn ready(&self) -> impl Future<Output = StoreResult<()>> + Send;
}
