//! The behaviour every store implementation must show, written once and
//! run against each backend: one file per area, like the store itself.
//!
//! Each check is a `pub async fn name<S: Store>(store: S)` that takes a
//! fresh, migrated store and panics on a deviation. [`all`] lists them for
//! a backend's test binary to run one test per check; [`declared`] finds
//! every such function in the area files' source, and the runner fails when
//! a declared check is missing from [`all`], so no check can be left out by
//! forgetting to list it.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use passgate_core::limits::*;
use passgate_core::{ApiKeyId, LoginId, ProjectId, Timestamp, UserId, sha256};

use crate::*;

mod events;
mod invites;
mod logins;
mod organizations;
mod otp;
pub use otp::{code_req, new_otp};
mod outbox;
mod projects;
mod retention;
mod sessions;
mod signing_keys;
mod stamps;
mod users;
mod webhooks;

/// One conformance check, ready to run on a store of type `S`.
pub struct Check<S> {
    /// `area::name`, as the test is named.
    pub name: &'static str,
    pub run: fn(S) -> Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<S> std::fmt::Debug for Check<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Lists an area's checks: `checks![area: name, name, …]`.
macro_rules! checks {
    ($area:ident: $($name:ident),* $(,)?) => {
        vec![$(Check { name: concat!(stringify!($area), "::", stringify!($name)), run: |store| Box::pin($area::$name(store)) }),*]
    };
}

/// Every check, by area.
pub fn all<S: Store>() -> Vec<Check<S>> {
    let mut all = Vec::new();
    all.extend(checks![projects:
        project_lifecycle, api_keys, a_failed_operation_does_not_undo_concurrent_ones, projects_are_listed,
        limits_and_retention_round_trip]);
    all.extend(checks![signing_keys: signing_keys]);
    all.extend(checks![logins:
        start_then_verify_once, tokens_are_scoped_to_their_project, expiry_is_exact,
        pkce_mismatch_does_not_consume_and_five_burn, fallback_code, fifty_concurrent_verifies_one_winner,
        returning_user_is_not_new, per_recipient_limit, per_project_limit, per_ip_limit, idempotency,
        a_failed_start_does_not_undo_concurrent_starts, concurrent_starts_obey_every_limit,
        concurrent_verifies_are_each_decided_alone, wrong_codes_count_per_address_across_logins,
        a_dev_projects_logins_can_be_forgotten]);
    all.extend(checks![invites:
        an_invite_is_accepted_once_under_concurrency, a_revoked_invite_answers_token_revoked,
        invites_expire_exactly, membership_comes_only_with_acceptance, invites_obey_the_limits_of_starts]);
    all.extend(checks![organizations:
        organizations_hold_members_with_roles, organizations_are_scoped_to_their_project]);
    all.extend(checks![users: users_are_found_by_id_and_address, erasure_leaves_nothing_of_the_user]);
    all.extend(checks![outbox:
        outbox_leases_and_results, an_email_leased_at_start_is_its_owners_until_the_lease_lapses,
        concurrent_delivery_outcomes_are_each_recorded, a_renewed_lease_keeps_the_email_its_holders,
        queued_payloads_are_those_not_yet_settled]);
    all.extend(checks![events:
        events_are_recorded, pages_see_every_event_once_under_concurrent_inserts, pages_filter_by_user_and_kind]);
    all.extend(checks![retention:
        logins_go_after_their_horizon_and_not_before, codes_and_session_keys_go_after_their_horizon,
        settled_emails_and_deliveries_go_after_their_horizon, keys_counters_and_stamp_records_go_after_their_horizon,
        batches_are_bounded_and_sweepers_share_the_work, events_go_after_their_projects_retention]);
    all.extend(checks![webhooks:
        an_event_queues_a_delivery_per_subscribed_endpoint, deliveries_are_leased_retried_and_settled,
        spent_retries_disable_a_failing_endpoint, endpoints_are_scoped_rotated_and_deleted,
        concurrent_claims_never_share_a_delivery, concurrent_creations_stop_at_the_limit]);
    all.extend(checks![otp:
        a_code_is_sent_then_verified_once, codes_belong_to_their_otp_id_and_project, three_wrong_codes_lock_the_code,
        wrong_codes_count_per_address_across_codes, sends_obey_the_limits, expiry_is_exact, sends_are_idempotent,
        target_keys_decide_the_session_key, fifty_concurrent_verifies_one_winner,
        erasure_removes_codes_and_session_keys, a_targeted_code_asks_for_a_session_key_and_counts_nothing,
        concurrent_sends_obey_the_address_limits, link_codes_and_one_time_codes_share_one_budget]);
    all.extend(checks![sessions:
        a_session_key_is_live_until_it_expires_or_is_revoked, a_user_has_at_most_ten_live_session_keys,
        revoking_a_users_session_keys, user_activity_lists_sign_ins_and_session_keys]);
    all.extend(checks![stamps:
        a_stamp_is_accepted_once_within_its_window, concurrent_records_of_one_body_accept_it_once]);
    all
}

/// The area files, as compiled in: what [`declared`] reads.
const SOURCES: [(&str, &str); 13] = [
    ("projects", include_str!("projects.rs")),
    ("signing_keys", include_str!("signing_keys.rs")),
    ("logins", include_str!("logins.rs")),
    ("invites", include_str!("invites.rs")),
    ("organizations", include_str!("organizations.rs")),
    ("users", include_str!("users.rs")),
    ("outbox", include_str!("outbox.rs")),
    ("events", include_str!("events.rs")),
    ("otp", include_str!("otp.rs")),
    ("sessions", include_str!("sessions.rs")),
    ("stamps", include_str!("stamps.rs")),
    ("webhooks", include_str!("webhooks.rs")),
    ("retention", include_str!("retention.rs")),
];

/// Every check declared in the area files (`area::name`): each public
/// `async fn` that takes a store.
pub fn declared() -> Vec<String> {
    let mut names = Vec::new();
    for (area, source) in SOURCES {
        for line in source.lines() {
            let Some(rest) = line.strip_prefix("pub async fn ") else { continue };
            if let Some((name, _)) = rest.split_once("<S: Store>(store: S)") {
                names.push(format!("{area}::{name}"));
            }
        }
    }
    names
}

/// Why a run of the suite is incomplete: the declared checks [`all`] leaves
/// out, and the area files [`SOURCES`] leaves out (`None` when complete).
pub fn missing_checks<S: Store>() -> Option<String> {
    let listed: Vec<&str> = all::<S>().iter().map(|c| c.name).collect();
    let missing: Vec<String> = declared().into_iter().filter(|d| !listed.contains(&d.as_str())).collect();
    let unread: Vec<&str> = listed
        .iter()
        .filter_map(|l| l.split_once("::").map(|(area, _)| area))
        .filter(|area| !SOURCES.iter().any(|(a, _)| a == area))
        .collect();
    (!missing.is_empty() || !unread.is_empty())
        .then(|| format!("checks declared but not listed in conformance::all: {missing:?}; areas not read: {unread:?}"))
}

/// 2026-11-21T00:00:00Z: a fixed "now" so tests never read the system clock.
pub const T0: Timestamp = Timestamp(1_795_219_200_000);

pub fn settings(name: &str) -> ProjectSettings {
    ProjectSettings {
        name: name.to_string(),
        app_name: None,
        redirect_urls: vec!["https://app.example.com/cb".to_string()],
        allowed_domains: vec![],
        allowed_emails: vec![],
        link_ttl_seconds: LINK_TTL_DEFAULT_SECONDS,
        emails_per_minute: EMAILS_PER_MINUTE_DEFAULT,
        emails_per_recipient: PER_RECIPIENT_EMAILS,
        starts_per_ip: PER_IP_STARTS_PER_MINUTE,
        otp_sends_per_email: passgate_core::otp::OTP_SENDS_PER_EMAIL,
        event_retention_seconds: EVENT_RETENTION_DEFAULT_SECONDS,
    }
}

pub(crate) fn key_for(project_id: &ProjectId, seed: &str) -> NewApiKey {
    NewApiKey {
        id: ApiKeyId::generate(),
        project_id: project_id.clone(),
        key_hash: sha256(seed.as_bytes()),
        hint: "sk_test_xxxx…".to_string(),
        created_at: T0,
    }
}

/// Creates a project with default settings and returns its id.
pub async fn project<S: Store>(store: &S) -> ProjectId {
    let id = ProjectId::generate();
    let p = NewProject { id: id.clone(), settings: settings("Acme"), is_dev: false, created_at: T0 };
    store.create_project(p, key_for(&id, id.as_str()), false).await.unwrap_or_else(|e| panic!("{e}"));
    id
}

pub fn default_limits() -> SendLimits {
    SendLimits {
        per_recipient: PER_RECIPIENT_EMAILS,
        per_recipient_window_seconds: PER_RECIPIENT_WINDOW_SECONDS,
        per_project_per_minute: EMAILS_PER_MINUTE_DEFAULT,
        per_ip_per_minute: PER_IP_STARTS_PER_MINUTE,
    }
}

/// A login ready to start; `token` seeds its hash.
pub fn new_login(project_id: &ProjectId, email: &str, token: &str, now: Timestamp) -> NewLogin {
    NewLogin {
        id: LoginId::generate(),
        project_id: project_id.clone(),
        email: email.to_string(),
        token_hash: sha256(token.as_bytes()),
        code_hash: None,
        code_challenge: None,
        state: Some("st".to_string()),
        validation_url: "https://app.example.com/cb".to_string(),
        ip_address: None,
        ip_network: None,
        user_agent: None,
        created_at: now,
        expires_at: now.plus_seconds(LINK_TTL_DEFAULT_SECONDS),
        email_id: passgate_core::EmailId::generate(),
        email_payload_sealed: vec![1, 2, 3],
        email_lease: None,
        limits: default_limits(),
        idempotency: None,
        invite_id: None,
    }
}

pub(crate) async fn start<S: Store>(store: &S, login: NewLogin) -> StartOutcome {
    store.start_login(login).await.unwrap_or_else(|e| panic!("{e}"))
}

pub fn by_token(project_id: &ProjectId, token: &str, now: Timestamp) -> VerifyByToken {
    VerifyByToken {
        project_id: project_id.clone(),
        token_hash: sha256(token.as_bytes()),
        verifier_challenge: None,
        now,
        new_user_id: UserId::generate(),
    }
}

pub(crate) async fn verify<S: Store>(store: &S, req: VerifyByToken) -> VerifyOutcome {
    store.verify_by_token(req).await.unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn verified(outcome: VerifyOutcome) -> VerifiedLogin {
    match outcome {
        VerifyOutcome::Verified(v) => v,
        VerifyOutcome::Failed(f) => panic!("expected success, got {f:?}"),
    }
}

pub(crate) fn failed(outcome: VerifyOutcome) -> VerifyFailure {
    match outcome {
        VerifyOutcome::Failed(f) => f,
        VerifyOutcome::Verified(v) => panic!("expected failure, got success for {}", v.login_id),
    }
}

pub(crate) async fn login_view<S: Store>(
    store: &S,
    project_id: &ProjectId,
    login_id: &LoginId,
    now: Timestamp,
) -> LoginView {
    store
        .get_login(project_id, login_id, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("login {login_id} not found"))
}
