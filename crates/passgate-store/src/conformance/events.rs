//! Conformance: events, and their pages.

use passgate_core::EventId;

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

/// Every page of a query, following the cursor, checking the order.
async fn every_page<S: Store>(store: &S, query: EventQuery<'_>) -> Vec<Event> {
    let mut seen: Vec<Event> = Vec::new();
    let mut cursor: Option<EventCursor> = None;
    loop {
        let page = store
            .events_page(EventQuery { before: cursor.as_ref(), ..query.clone() })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(page.len() <= query.limit as usize);
        let Some(last) = page.last() else { break };
        cursor = Some(EventCursor::after(last));
        seen.extend(page);
    }
    for pair in seen.windows(2) {
        assert!(
            (pair[0].created_at, &pair[0].id) > (pair[1].created_at, &pair[1].id),
            "pages are newest first, without repeats: {:?} then {:?}",
            (pair[0].created_at, &pair[0].id),
            (pair[1].created_at, &pair[1].id)
        );
    }
    seen
}

/// A page never repeats or skips an event: with events written while a
/// client pages through, every event that existed when it began is seen
/// exactly once, in order.
pub async fn pages_see_every_event_once_under_concurrent_inserts<S: Store>(store: S) {
    let p = project(&store).await;
    for i in 0..40 {
        // Some share a millisecond, so the id decides their order.
        start(&store, new_login(&p, &format!("u{i}@example.com"), &format!("t{i}"), T0.plus_millis(i / 2))).await;
    }
    let before: HashSet<EventId> =
        store.list_events(&p, 1000).await.unwrap_or_else(|e| panic!("{e}")).into_iter().map(|e| e.id).collect();
    assert_eq!(before.len(), 40);
    let writer = {
        let (store, p) = (store.clone(), p.clone());
        tokio::spawn(async move {
            for i in 0..40 {
                // Newer and older than the events paged: neither may
                // disturb the pages.
                let at = if i % 2 == 0 { T0.plus_seconds(60 + i) } else { T0.plus_millis(-1 - i) };
                start(&store, new_login(&p, &format!("late{i}@example.com"), &format!("l{i}"), at)).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let query = EventQuery { project_id: &p, user_id: None, kinds: &[], before: None, limit: 3 };
    let seen = every_page(&store, query).await;
    writer.await.unwrap_or_else(|e| panic!("{e}"));
    let seen_ids: HashSet<EventId> = seen.iter().map(|e| e.id.clone()).collect();
    assert_eq!(seen_ids.len(), seen.len(), "no event twice");
    assert!(before.is_subset(&seen_ids), "every event that existed is seen");
    let all =
        every_page(&store, EventQuery { project_id: &p, user_id: None, kinds: &[], before: None, limit: 7 }).await;
    assert_eq!(all.len(), 80);
}

/// Filters by user and by one or several kinds, each with pages; another
/// project's events are never seen.
pub async fn pages_filter_by_user_and_kind<S: Store>(store: S) {
    let p = project(&store).await;
    let other = project(&store).await;
    let mut users = Vec::new();
    for (i, email) in ["ada@example.com", "bob@example.com"].into_iter().enumerate() {
        let at = T0.plus_seconds(i64::try_from(i).unwrap_or(0) * 10);
        for round in 0..3 {
            let token = format!("{email}{round}");
            start(&store, new_login(&p, email, &token, at.plus_millis(round))).await;
            verify(&store, by_token(&p, "wrong", at.plus_millis(round))).await;
            let done = verified(verify(&store, by_token(&p, &token, at.plus_millis(round))).await);
            users.push(done.user.id.clone());
        }
        start(&store, new_login(&other, email, &format!("o{email}"), at)).await;
    }
    let ada = users[0].clone();
    let all = |user_id, kinds| EventQuery { project_id: &p, user_id, kinds, before: None, limit: 2 };

    let everything = every_page(&store, all(None, &[])).await;
    assert_eq!(everything.len(), 18);
    assert!(everything.iter().all(|e| e.project_id == p));

    let verified_only = every_page(&store, all(None, &[EventKind::AuthVerified])).await;
    assert_eq!(verified_only.len(), 6);
    assert!(verified_only.iter().all(|e| e.kind == EventKind::AuthVerified));

    let two_kinds = every_page(&store, all(None, &[EventKind::AuthFailed, EventKind::AuthStarted])).await;
    assert_eq!(two_kinds.len(), 12);
    assert_eq!(two_kinds.iter().filter(|e| e.kind == EventKind::AuthFailed).count(), 6);
    assert!(two_kinds.iter().all(|e| e.reason.is_some() == (e.kind == EventKind::AuthFailed)));

    let adas = every_page(&store, all(Some(&ada), &[])).await;
    assert_eq!(adas.len(), 3, "a user's events are those that name them");
    assert!(adas.iter().all(|e| e.user_id.as_ref() == Some(&ada)));
    let adas_starts = every_page(&store, all(Some(&ada), &[EventKind::AuthStarted])).await;
    assert!(adas_starts.is_empty());

    let others = every_page(&store, EventQuery { project_id: &other, ..all(None, &[]) }).await;
    assert_eq!(others.len(), 2);
    let foreign = every_page(&store, EventQuery { project_id: &other, ..all(Some(&ada), &[]) }).await;
    assert!(foreign.is_empty(), "a user id of another project names nothing here");
}
