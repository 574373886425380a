//! The session stores on real SQLite and PostgreSQL, and `Sessions` over
//! them (S22): new ids at login, only hashes at rest, logout and "sign out
//! everywhere" effective on the next request.

use axum::http::{HeaderMap, HeaderValue, header};
use passgate_client::axum::{
    NewSession, PostgresSessionStore, SessionRecord, SessionStore, Sessions, SqliteSessionStore,
};
use passgate_testkit::TempDatabase;

fn record(handle: &str, user: &str, created_at: i64, expires_at: i64) -> SessionRecord {
    SessionRecord {
        handle: handle.into(),
        user_id: user.into(),
        email: format!("{user}@example.com"),
        roles: vec!["admin".into(), "billing".into()],
        method: "email_link".into(),
        created_at,
        expires_at,
        user_agent: Some("Mozilla/5.0".into()),
    }
}

/// What every store must do, on one store.
async fn conformance(store: &dyn SessionStore) {
    let (now, hour) = (1_795_219_200, 3_600);
    let a = record("h-a", "usr_1", now, now + hour);
    let b = record("h-b", "usr_1", now + 1, now + hour);
    let c = record("h-c", "usr_2", now, now + hour);
    let old = record("h-old", "usr_1", now - 2 * hour, now - hour);
    for (hash, r) in [([1u8; 32], &a), ([2; 32], &b), ([3; 32], &c), ([4; 32], &old)] {
        store.insert(hash, r).await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(store.get([1; 32], now).await.unwrap_or_else(|e| panic!("{e}")), Some(a.clone()));
    assert_eq!(store.get([9; 32], now).await.unwrap_or_else(|e| panic!("{e}")), None, "unknown id");
    assert_eq!(store.get([4; 32], now).await.unwrap_or_else(|e| panic!("{e}")), None, "expired");
    assert_eq!(store.get([1; 32], now + hour).await.unwrap_or_else(|e| panic!("{e}")), None, "expires at expires_at");
    let listed = store.list_user("usr_1", now).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed, [b.clone(), a.clone()], "live sessions, newest first");

    assert!(!store.remove_handle("usr_2", "h-a").await.unwrap_or_else(|e| panic!("{e}")), "another user's handle");
    assert!(store.remove_handle("usr_1", "h-a").await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(store.get([1; 32], now).await.unwrap_or_else(|e| panic!("{e}")), None);
    assert!(store.remove([3; 32]).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(!store.remove([3; 32]).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(store.remove_expired(now).await.unwrap_or_else(|e| panic!("{e}")), 1);
    assert_eq!(store.remove_user("usr_1").await.unwrap_or_else(|e| panic!("{e}")), 1);
    assert!(store.list_user("usr_1", now).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    // A second session with the same id hash cannot be made.
    store.insert([5; 32], &record("h-5", "usr_3", now, now + hour)).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(store.insert([5; 32], &record("h-6", "usr_3", now, now + hour)).await.is_err());
}

#[tokio::test]
async fn the_sqlite_store_keeps_its_contract() {
    let db = TempDatabase::sqlite().await;
    let store = SqliteSessionStore::open(db.path()).unwrap_or_else(|e| panic!("{e}"));
    conformance(&store).await;
    // Opening it again keeps what is there (the table is created once).
    let again = SqliteSessionStore::open(db.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.list_user("usr_3", 0).await.unwrap_or_else(|e| panic!("{e}")).len(), 1);
}

#[tokio::test]
async fn the_postgres_store_keeps_its_contract() {
    let db = TempDatabase::postgres().await;
    // Two instances starting at once both create the table safely.
    let (first, second) = tokio::join!(PostgresSessionStore::connect(&db.url), PostgresSessionStore::connect(&db.url));
    let (store, _) = (first.unwrap_or_else(|e| panic!("{e}")), second.unwrap_or_else(|e| panic!("{e}")));
    conformance(&store).await;
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().and_then(|pair| pair.split_once('=')).map(|(_, v)| v.to_string()).unwrap_or_default()
}

fn with_cookie(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("__Host-session={id}")).unwrap_or_else(|e| panic!("{e}")),
    );
    headers
}

fn new_session(user: &str) -> NewSession {
    NewSession {
        user_id: user.into(),
        email: format!("{user}@example.com"),
        roles: vec![],
        method: "email_otp".into(),
        user_agent: None,
    }
}

async fn sessions_behave(sessions: &Sessions, dump: impl Fn() -> String) {
    let (first, cookie) =
        sessions.start(&HeaderMap::new(), new_session("usr_a")).await.unwrap_or_else(|e| panic!("{e}"));
    let cookie = cookie.to_string();
    assert!(cookie.starts_with("__Host-session=") && cookie.contains("; Secure; HttpOnly; SameSite=Lax"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    let id = cookie_value(&cookie);
    assert_eq!(id.len(), 43, "256 bits, base64url");
    let current = sessions.current(&with_cookie(&id)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(current.map(|s| s.handle), Some(first.handle.clone()));
    assert!(!dump().contains(&id), "the session id itself is at rest");

    // A login from a browser that had a session: a new id, and the old one ends.
    let (second, cookie) =
        sessions.start(&with_cookie(&id), new_session("usr_a")).await.unwrap_or_else(|e| panic!("{e}"));
    let renewed = cookie_value(&cookie.to_string());
    assert_ne!(renewed, id);
    assert_ne!(second.handle, first.handle);
    assert_eq!(sessions.current(&with_cookie(&id)).await.unwrap_or_else(|e| panic!("{e}")), None);
    assert!(sessions.current(&with_cookie(&renewed)).await.unwrap_or_else(|e| panic!("{e}")).is_some());

    // Logout: the next request has no session, and the cookie is removed.
    let removal = sessions.end(&with_cookie(&renewed)).await.unwrap_or_else(|e| panic!("{e}")).to_string();
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert_eq!(sessions.current(&with_cookie(&renewed)).await.unwrap_or_else(|e| panic!("{e}")), None);

    // Sign out everywhere: every session of the user, at once.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, cookie) =
            sessions.start(&HeaderMap::new(), new_session("usr_b")).await.unwrap_or_else(|e| panic!("{e}"));
        ids.push(cookie_value(&cookie.to_string()));
    }
    let (_, other) = sessions.start(&HeaderMap::new(), new_session("usr_c")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sessions.list("usr_b").await.unwrap_or_else(|e| panic!("{e}")).len(), 3);
    assert_eq!(sessions.end_everywhere("usr_b").await.unwrap_or_else(|e| panic!("{e}")), 3);
    for id in &ids {
        assert_eq!(sessions.current(&with_cookie(id)).await.unwrap_or_else(|e| panic!("{e}")), None);
    }
    let other = cookie_value(&other.to_string());
    assert!(
        sessions.current(&with_cookie(&other)).await.unwrap_or_else(|e| panic!("{e}")).is_some(),
        "another user's session stays"
    );
    // Malformed and unknown ids are no session.
    let unknown = "A".repeat(43);
    for bad in ["", "short", unknown.as_str()] {
        assert_eq!(sessions.current(&with_cookie(bad)).await.unwrap_or_else(|e| panic!("{e}")), None, "{bad}");
    }
}

#[tokio::test]
async fn sessions_on_sqlite_renew_ids_end_at_once_and_keep_only_hashes() {
    let db = TempDatabase::sqlite().await;
    let sessions = Sessions::new(SqliteSessionStore::open(db.path()).unwrap_or_else(|e| panic!("{e}")));
    sessions_behave(&sessions, || db.dump()).await;
}

#[tokio::test]
async fn sessions_on_postgres_renew_ids_end_at_once_and_keep_only_hashes() {
    let db = TempDatabase::postgres().await;
    let sessions = Sessions::new(PostgresSessionStore::connect(&db.url).await.unwrap_or_else(|e| panic!("{e}")));
    sessions_behave(&sessions, || db.dump()).await;
}
