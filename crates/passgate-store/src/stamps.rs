//! Stamp replay records: each stamped body is accepted once within its
//! time window, by every instance that shares the database.

use std::future::Future;

use passgate_core::Timestamp;

use crate::StoreResult;

pub trait Stamps: Clone + Send + Sync + 'static {
    /// Records a stamped request by its replay digest (a hash of the key
    /// and the body) until `keep_until`: `true` if it was new, `false` if
    /// it was seen before and its record is still in its window (a replay;
    /// a record past `keep_until` is taken over). One conditional insert decides, so two
    /// instances racing with the same body accept it once. Records past
    /// their window are removed along the way.
    fn record_stamp(
        &self,
        digest: [u8; 32],
        keep_until: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}
