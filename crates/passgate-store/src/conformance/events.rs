//! Conformance: events.

use super::*;

pub async fn events_are_recorded<S: Store>(store: S) {
    let p = project(&store).await;
    let mut login = new_login(&p, "ada@example.com", "e1", T0);
    login.ip_address = Some("198.51.100.7".into());
    login.ip_network = login.ip_address.clone();
    login.user_agent = Some("Firefox".into());
    start(&store, login).await;
    verify(&store, by_token(&p, "bad", T0.plus_seconds(1))).await;
    verify(&store, by_token(&p, "e1", T0.plus_seconds(2))).await;
    let events = store.list_events(&p, 10).await.unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["auth.verified", "auth.failed", "auth.started"], "newest first");
    assert_eq!(events[2].ip_address.as_deref(), Some("198.51.100.7"));
    assert_eq!(events[2].user_agent.as_deref(), Some("Firefox"));
    assert_eq!(events[1].reason.as_deref(), Some("token_invalid"));
    assert!(events[0].user_id.is_some());
    let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert!(
        store.list_events(&ProjectId::from_trusted("prj_other"), 10).await.unwrap_or_else(|e| panic!("{e}")).is_empty()
    );
}
