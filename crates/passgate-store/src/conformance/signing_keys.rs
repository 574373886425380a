//! Conformance: signing keys.

use super::*;

fn signing_key(kid: &str, at: Timestamp) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_string(),
        public_key: vec![7; 32],
        private_key_sealed: vec![9; 60],
        created_at: at,
        retired_at: None,
    }
}

pub async fn signing_keys<S: Store>(store: S) {
    assert!(store.signing_keys().await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert!(store.insert_first_signing_key(signing_key("a", T0)).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(!store.insert_first_signing_key(signing_key("b", T0)).await.unwrap_or_else(|e| panic!("{e}")));
    store.rotate_signing_key(signing_key("c", T0), T0.plus_seconds(60)).await.unwrap_or_else(|e| panic!("{e}"));
    let keys = store.signing_keys().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["c", "a"]);
    assert_eq!(keys[0].retired_at, None);
    assert_eq!(keys[1].retired_at, Some(T0.plus_seconds(60)));
    assert_eq!(keys[0].private_key_sealed, vec![9; 60]);
}
