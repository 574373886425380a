//! Conformance: projects.

use super::*;

pub async fn project_lifecycle<S: Store>(store: S) {
    let id = project(&store).await;
    let p = store.get_project(&id).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("missing"));
    assert_eq!(p.settings, settings("Acme"));
    assert_eq!(p.app_name(), "Acme");
    assert_eq!(p.created_at, T0);

    let mut changed = settings("Acme 2");
    changed.app_name = Some("Acme App".into());
    changed.allowed_domains = vec!["example.com".into()];
    changed.link_ttl_seconds = 600;
    let updated = store.update_project(&id, changed.clone()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(updated.settings, changed);
    assert_eq!(updated.app_name(), "Acme App");
    let again = store.get_project(&id).await.unwrap_or_else(|e| panic!("{e}")).map(|p| p.settings);
    assert_eq!(again, Some(changed));

    assert!(matches!(
        store.update_project(&ProjectId::from_trusted("prj_missing"), settings("x")).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.get_project(&ProjectId::from_trusted("prj_missing")).await.unwrap_or_else(|e| panic!("{e}")),
        None
    );

    let dup = NewProject { id: id.clone(), settings: settings("dup"), is_dev: false, created_at: T0 };
    assert!(matches!(
        store.create_project(dup.clone(), key_for(&id, "other"), false).await,
        Err(StoreError::Conflict(_))
    ));
    store.create_project(dup, key_for(&id, "other2"), true).await.unwrap_or_else(|e| panic!("{e}"));
    let kept = store.get_project(&id).await.unwrap_or_else(|e| panic!("{e}")).map(|p| p.settings.name);
    assert_eq!(kept.as_deref(), Some("Acme 2"), "if_absent must not overwrite");
}

pub async fn api_keys<S: Store>(store: S) {
    let id = project(&store).await;
    let first = store.find_api_key(&sha256(id.as_str().as_bytes())).await.unwrap_or_else(|e| panic!("{e}"));
    let first = first.unwrap_or_else(|| panic!("first key missing"));
    assert_eq!(first.project.id, id);
    assert_eq!(first.revoked_at, None);
    assert_eq!(first.key_hash, sha256(id.as_str().as_bytes()));

    let second = key_for(&id, "second");
    store.create_api_key(second.clone()).await.unwrap_or_else(|e| panic!("{e}"));
    let listed = store.list_api_keys(&id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|k| k.id == second.id));

    store.revoke_api_key(&second.id, T0.plus_seconds(5)).await.unwrap_or_else(|e| panic!("{e}"));
    store.revoke_api_key(&second.id, T0.plus_seconds(9)).await.unwrap_or_else(|e| panic!("{e}"));
    let found = store.find_api_key(&second.key_hash).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.and_then(|k| k.revoked_at), Some(T0.plus_seconds(5)), "first revocation time kept");
    assert!(matches!(
        store.revoke_api_key(&ApiKeyId::from_trusted("key_missing"), T0).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.create_api_key(key_for(&ProjectId::from_trusted("prj_missing"), "x")).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.find_api_key(&sha256(b"unknown")).await.unwrap_or_else(|e| panic!("{e}")).is_none());
}

/// Backends may commit concurrent operations together (SQLite's group
/// commit); an operation that fails must roll back alone, and every other
/// one must be there afterwards.
pub async fn a_failed_operation_does_not_undo_concurrent_ones<S: Store>(store: S) {
    let taken = project(&store).await;
    let attempts = (0..20).map(|i| {
        let store = store.clone();
        let id = if i % 4 == 0 { taken.clone() } else { ProjectId::generate() };
        let key = key_for(&id, &format!("seed-{i}"));
        tokio::spawn(async move {
            let p = NewProject { id: id.clone(), settings: settings("P"), is_dev: false, created_at: T0 };
            (id, key.key_hash, store.create_project(p, key, false).await)
        })
    });
    for joined in futures::future::join_all(attempts).await {
        let (id, key_hash, result) = joined.unwrap_or_else(|e| panic!("{e}"));
        let key = store.find_api_key(&key_hash).await.unwrap_or_else(|e| panic!("{e}"));
        if id == taken {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
            assert!(key.is_none(), "a failed create leaves no key behind");
        } else {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(key.map(|k| k.project.id), Some(id), "a concurrent success is kept");
        }
    }
}

/// Every project, oldest first.
pub async fn projects_are_listed<S: Store>(store: S) {
    assert!(store.list_projects().await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    let mut ids = Vec::new();
    for (i, name) in ["First", "Second", "Third"].into_iter().enumerate() {
        let id = ProjectId::generate();
        let at = T0.plus_seconds(i64::try_from(i).unwrap_or_default());
        let p = NewProject { id: id.clone(), settings: settings(name), is_dev: false, created_at: at };
        store.create_project(p, key_for(&id, name), false).await.unwrap_or_else(|e| panic!("{e}"));
        ids.push(id);
    }
    let listed = store.list_projects().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(listed[1].settings, settings("Second"));
}

/// The limits and the event retention are stored as given, on create and
/// on update, and read back by every read: the project, the list, and the
/// project of an API key (what the limits of a request come from).
pub async fn limits_and_retention_round_trip<S: Store>(store: S) {
    let id = ProjectId::generate();
    let mut given = settings("Limited");
    given.emails_per_recipient = 2;
    given.starts_per_ip = 7;
    given.otp_sends_per_email = 1;
    given.event_retention_seconds = 0;
    let p = NewProject { id: id.clone(), settings: given.clone(), is_dev: false, created_at: T0 };
    store.create_project(p, key_for(&id, "limited"), false).await.unwrap_or_else(|e| panic!("{e}"));
    let read = |store: S, id: ProjectId| async move {
        let got = store.get_project(&id).await.unwrap_or_else(|e| panic!("{e}")).map(|p| p.settings);
        let listed = store.list_projects().await.unwrap_or_else(|e| panic!("{e}"));
        let listed = listed.into_iter().find(|p| p.id == id).map(|p| p.settings);
        let by_key = store.find_api_key(&sha256(b"limited")).await.unwrap_or_else(|e| panic!("{e}"));
        (got, listed, by_key.map(|k| k.project.settings))
    };
    let (got, listed, by_key) = read(store.clone(), id.clone()).await;
    assert_eq!(got.as_ref(), Some(&given));
    assert_eq!(listed.as_ref(), Some(&given));
    assert_eq!(by_key.as_ref(), Some(&given));

    let mut changed = given.clone();
    changed.emails_per_recipient = 1_000;
    changed.starts_per_ip = 100_000;
    changed.otp_sends_per_email = 100;
    changed.event_retention_seconds = 30 * 86_400;
    let updated = store.update_project(&id, changed.clone()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(updated.settings, changed);
    let (got, listed, by_key) = read(store.clone(), id.clone()).await;
    assert_eq!(got.as_ref(), Some(&changed));
    assert_eq!(listed.as_ref(), Some(&changed));
    assert_eq!(by_key.as_ref(), Some(&changed), "an update reaches the key's project (no stale cache)");

    // A project made with the defaults reads them back.
    let plain = project(&store).await;
    let defaults = store.get_project(&plain).await.unwrap_or_else(|e| panic!("{e}")).map(|p| p.settings);
    let defaults = defaults.unwrap_or_else(|| panic!("missing"));
    assert_eq!(
        (
            defaults.emails_per_recipient,
            defaults.starts_per_ip,
            defaults.otp_sends_per_email,
            defaults.event_retention_seconds
        ),
        (PER_RECIPIENT_EMAILS, PER_IP_STARTS_PER_MINUTE, passgate_core::otp::OTP_SENDS_PER_EMAIL, 90 * 86_400)
    );
}
