//! Conformance: stamp replay records.

use super::*;

fn digest(n: u32) -> [u8; 32] {
    sha256(format!("stamp-{n}").as_bytes())
}

async fn record<S: Store>(store: &S, n: u32, keep_until: Timestamp, now: Timestamp) -> bool {
    store.record_stamp(digest(n), keep_until, now).await.unwrap_or_else(|e| panic!("{e}"))
}

/// A stamped body is accepted once until its record's `keep_until`; then
/// it is no replay any more, and lapsed records are swept as new ones come.
pub async fn a_stamp_is_accepted_once_within_its_window<S: Store>(store: S) {
    let keep = T0.plus_seconds(300);
    assert!(record(&store, 1, keep, T0).await, "new");
    assert!(!record(&store, 1, keep, T0.plus_seconds(1)).await, "a replay");
    assert!(!record(&store, 1, keep.plus_seconds(600), T0.plus_seconds(1)).await, "a replay, whatever it asks");
    assert!(record(&store, 2, keep, T0.plus_seconds(1)).await, "another body");
    assert!(!record(&store, 1, keep, keep.plus_millis(-1)).await, "kept until keep_until");

    // Past keep_until a new record sweeps the lapsed ones: the first body
    // is new again, and kept again.
    let later = keep.plus_seconds(600);
    assert!(record(&store, 3, later, keep).await);
    assert!(record(&store, 1, later, keep.plus_seconds(1)).await);
    assert!(!record(&store, 1, later, keep.plus_seconds(2)).await);
    assert!(!record(&store, 3, later, keep.plus_seconds(2)).await, "a live record is not swept");
    // The very body whose record lapsed is new again (nothing else swept it).
    assert!(record(&store, 4, keep.plus_seconds(10), keep.plus_seconds(3)).await);
    assert!(record(&store, 4, later, keep.plus_seconds(10)).await, "its own record lapsed: new again");
    assert!(!record(&store, 4, later, keep.plus_seconds(11)).await);

    // A lapsed record is no replay even before it is swept, however many
    // lapsed records wait to be swept before it.
    let base = later.plus_seconds(1);
    for n in 10..30 {
        assert!(record(&store, n, base.plus_millis(i64::from(n)), base).await);
    }
    let now = base.plus_seconds(60);
    assert!(record(&store, 29, now.plus_seconds(300), now).await, "lapsed: new again");
    assert!(!record(&store, 29, now.plus_seconds(300), now).await);
    assert!(record(&store, 2, now.plus_seconds(300), now).await, "lapsed long ago");
}

/// Many instances racing with one body accept it once.
pub async fn concurrent_records_of_one_body_accept_it_once<S: Store>(store: S) {
    let attempts = (0..50).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.record_stamp(digest(7), T0.plus_seconds(300), T0).await })
    });
    let mut accepted = 0;
    for r in futures::future::join_all(attempts).await {
        accepted += usize::from(r.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")));
    }
    assert_eq!(accepted, 1);
}
