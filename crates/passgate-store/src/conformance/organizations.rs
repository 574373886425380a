//! Conformance: organizations and lookup.

use passgate_core::OrganizationId;

use super::invites::organization;
use super::*;

fn member(email: &str, role: &str) -> NewMember {
    NewMember { email: email.into(), role: role.into(), new_user_id: UserId::generate() }
}

/// Members with roles: created with the organization (an existing user
/// keeps their id, a new address gets a user), roles changed, members
/// added and removed; `organizations_of` answers lookup.
pub async fn organizations_hold_members_with_roles<S: Store>(store: S) {
    let p = project(&store).await;
    start(&store, new_login(&p, "ada@example.com", "o1", T0)).await;
    let ada = verified(verify(&store, by_token(&p, "o1", T0)).await).user;
    let org =
        organization(&store, &p, vec![member("ada@example.com", "owner"), member("bob@example.com", "member")]).await;
    let got =
        store.get_organization(&p, &org).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("gone"));
    assert_eq!(got.name, "Acme");
    assert_eq!(got.created_at, T0);
    let found: Vec<(String, String)> = got.members.iter().map(|m| (m.email.clone(), m.role.clone())).collect();
    assert_eq!(found.len(), 2);
    assert!(
        found.contains(&("ada@example.com".into(), "owner".into()))
            && found.contains(&("bob@example.com".into(), "member".into()))
    );
    assert_eq!(
        got.members.iter().find(|m| m.email == "ada@example.com").map(|m| m.user_id.clone()),
        Some(ada.id.clone())
    );
    let bob = store
        .find_user(&p, "bob@example.com")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no bob"));
    assert_eq!(bob.created_at, T0);
    // Bob signs in later as the user the organization made.
    start(&store, new_login(&p, "bob@example.com", "o2", T0)).await;
    let bob_in = verified(verify(&store, by_token(&p, "o2", T0.plus_seconds(1))).await);
    assert!(!bob_in.is_new_user);
    assert_eq!(bob_in.user.id, bob.id);

    let changed =
        store.set_member_role(&p, &org, &bob.id, "admin", T0.plus_seconds(5)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((changed.role.as_str(), changed.joined_at, changed.email.as_str()), ("admin", T0, "bob@example.com"));
    start(&store, new_login(&p, "carol@example.com", "o3", T0)).await;
    let carol = verified(verify(&store, by_token(&p, "o3", T0)).await).user;
    let added = store
        .set_member_role(&p, &org, &carol.id, "viewer", T0.plus_seconds(9))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(added.joined_at, T0.plus_seconds(9));
    let second = organization(&store, &p, vec![member("carol@example.com", "owner")]).await;
    let carols = store.organizations_of(&p, &carol.id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(carols.len(), 2);
    assert!(carols.contains(&org) && carols.contains(&second));

    assert!(store.remove_member(&p, &org, &bob.id).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(!store.remove_member(&p, &org, &bob.id).await.unwrap_or_else(|e| panic!("{e}")), "already removed");
    assert!(store.organizations_of(&p, &bob.id).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    let listed = store.list_organizations(&p).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.iter().map(|o| (o.id.clone(), o.members)).collect::<Vec<_>>(), vec![(second, 1), (org, 2)]);
}

/// Another project's organizations and users are not found, whatever the
/// call, and its own list shows none of them.
pub async fn organizations_are_scoped_to_their_project<S: Store>(store: S) {
    let p = project(&store).await;
    let other = project(&store).await;
    let org = organization(&store, &p, vec![member("ada@example.com", "owner")]).await;
    let ada = store
        .find_user(&p, "ada@example.com")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no ada"));
    start(&store, new_login(&other, "zed@example.com", "z", T0)).await;
    let zed = verified(verify(&store, by_token(&other, "z", T0)).await).user;

    assert_eq!(store.get_organization(&other, &org).await.unwrap_or_else(|e| panic!("{e}")), None);
    assert!(matches!(store.set_member_role(&other, &org, &ada.id, "x", T0).await, Err(StoreError::NotFound)));
    assert!(
        matches!(store.set_member_role(&p, &org, &zed.id, "x", T0).await, Err(StoreError::NotFound)),
        "a user of another project"
    );
    assert!(matches!(
        store.set_member_role(&p, &OrganizationId::generate(), &ada.id, "x", T0).await,
        Err(StoreError::NotFound)
    ));
    assert!(!store.remove_member(&other, &org, &ada.id).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(store.organizations_of(&other, &ada.id).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert!(store.list_organizations(&other).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert_eq!(store.find_user(&other, "ada@example.com").await.unwrap_or_else(|e| panic!("{e}")), None);
    assert_eq!(store.get_user(&other, &ada.id).await.unwrap_or_else(|e| panic!("{e}")), None);
    // Nothing changed for the project that owns them.
    let still = store.get_organization(&p, &org).await.unwrap_or_else(|e| panic!("{e}")).map(|o| o.members.len());
    assert_eq!(still, Some(1));
}
