//! The shared store conformance suite on PostgreSQL, each check on a fresh
//! database (created from `PASSGATE_TEST_POSTGRES_URL`, dropped afterwards),
//! and PostgreSQL's own tests: one test binary (`harness = false`, see
//! `passgate_testkit::conformance`).

use passgate_store::Database;
use passgate_store_postgres::{PgStore, PoolSettings};
use passgate_testkit::TempDatabase;
use passgate_testkit::conformance::{run, trial};

async fn instance(url: &str) -> PgStore {
    let settings = PoolSettings { max_connections: 8, ..PoolSettings::default() };
    PgStore::connect(url, settings).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn fresh() -> (PgStore, TempDatabase) {
    let database = TempDatabase::postgres().await;
    let store = instance(&database.url).await;
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    (store, database)
}

fn main() {
    run(
        fresh,
        vec![
            trial(
                "lanes::statements_probe_their_index_even_when_planned_on_empty_tables",
                lanes::statements_probe_their_index_even_when_planned_on_empty_tables,
            ),
            trial(
                "lanes::give_connections_back_without_their_settings_or_an_open_transaction",
                lanes::give_connections_back_without_their_settings_or_an_open_transaction,
            ),
            trial(
                "lanes::writes_held_together_are_written_by_the_batched_statements",
                lanes::writes_held_together_are_written_by_the_batched_statements,
            ),
            trial(
                "lanes::code_sends_and_verifies_held_together_are_written_by_the_batched_statements",
                lanes::code_sends_and_verifies_held_together_are_written_by_the_batched_statements,
            ),
            trial("database::readiness_needs_every_migration", database::readiness_needs_every_migration),
            trial(
                "database::a_links_email_is_found_through_the_index_of_emails_with_a_login",
                database::a_links_email_is_found_through_the_index_of_emails_with_a_login,
            ),
            trial("database::tls_is_used_when_the_url_asks_for_it", database::tls_is_used_when_the_url_asks_for_it),
            trial(
                "key_cache::another_instance_hears_of_revocations_and_project_changes",
                key_cache::another_instance_hears_of_revocations_and_project_changes,
            ),
            trial(
                "key_cache::changes_made_in_plain_sql_are_announced_too",
                key_cache::changes_made_in_plain_sql_are_announced_too,
            ),
            trial(
                "key_cache::a_lost_listener_connection_empties_the_cache",
                key_cache::a_lost_listener_connection_empties_the_cache,
            ),
            trial("key_cache::entries_expire_without_news", key_cache::entries_expire_without_news),
        ],
    )
}

/// The hot path's lanes (src/writer.rs, src/batch/).
mod lanes {
    use std::time::Duration;

    use passgate_core::limits::LimitKind;
    use passgate_core::otp::OtpFailure;
    use passgate_store::conformance::{T0, by_token, code_req, new_login, new_otp, project};
    use passgate_store::{
        Database, DeliveryResult, Lease, Logins, Otp, OtpVerifyOutcome, Outbox, StartOutcome, VerifyOutcome,
    };
    use passgate_store_postgres::{BatchedCounts, PgStore, PoolSettings};
    use passgate_testkit::TempDatabase;

    use super::fresh;

    /// The lanes' statements that could scan a growing table, planned the way
    /// the lanes plan them (cached generic plans) on an empty database, where a
    /// plan could most easily settle on a scan that the grown table would make
    /// ruinous (bench/NOTES.md, item 8): each reaches its table through the one
    /// index made for its lookup, never a scan, and never the outbox's index of
    /// due mail, which holds every queued email.
    pub async fn statements_probe_their_index_even_when_planned_on_empty_tables() {
        let (store, _database) = fresh().await;
        let plans = store.lane_plans().await.unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = plans.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "verify_together",
                "record_together",
                "record_one",
                "send_otps_together",
                "read_otps_together",
                "consume_otps_together",
                "verify_otp_one"
            ]
        );
        for (name, plan) in &plans {
            for refused in ["Seq Scan", "Hash Join", "Merge Join", "outbox_due"] {
                assert!(!plan.contains(refused), "{name}'s plan has a {refused}:\n{plan}");
            }
        }
        let index_of = |name: &str, index: &str| {
            let (_, plan) = plans.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no plan for {name}"));
            assert!(plan.contains(&format!("Index Scan using {index}")), "{name} does not probe {index}:\n{plan}");
        };
        index_of("verify_together", "logins_token_hash_key");
        index_of("record_together", "outbox_pkey");
        index_of("record_one", "outbox_pkey");
        index_of("send_otps_together", "otp_codes_by_email");
        index_of("send_otps_together", "code_budgets_pkey");
        index_of("read_otps_together", "otp_codes_pkey");
        index_of("consume_otps_together", "otp_codes_pkey");
        index_of("consume_otps_together", "code_budgets_pkey");
        index_of("verify_otp_one", "otp_codes_pkey");
    }

    /// A lane sets its plan settings for the session of the connection it
    /// takes from the pool, and the starts lane chains one transaction into the
    /// next while starts keep coming (src/writer.rs). A connection the lanes
    /// give back carries neither: a read on it would otherwise run with
    /// sequential scans off, or inside a transaction left open.
    pub async fn give_connections_back_without_their_settings_or_an_open_transaction() {
        let database = TempDatabase::postgres().await;
        // One connection: the lanes and the read below take turns on it.
        let settings = PoolSettings { max_connections: 1, ..PoolSettings::default() };
        let store = PgStore::connect(&database.url, settings).await.unwrap_or_else(|e| panic!("{e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        let project_id = project(&store).await;
        let mut watcher = {
            use sqlx::Connection;
            sqlx::PgConnection::connect(&database.url).await.unwrap_or_else(|e| panic!("{e}"))
        };
        let tokens: Vec<String> = (0..20).map(|i| format!("tok-{i}")).collect();
        let starts: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let (store, login) = (store.clone(), new_login(&project_id, &format!("u{i}@example.com"), token, T0));
                tokio::spawn(async move { store.start_login(login).await })
            })
            .collect();
        for start in starts {
            let outcome = start.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(outcome, StartOutcome::Started);
        }
        // Chained only while more starts wait: never idle inside a transaction
        // (looked at within the 100 ms the lane keeps its connection).
        let idle_in_transaction: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(idle_in_transaction, 0, "the starts lane sits idle inside a transaction");
        let verifies: Vec<_> = tokens
            .iter()
            .map(|token| {
                let (store, req) = (store.clone(), by_token(&project_id, token, T0.plus_seconds(1)));
                tokio::spawn(async move { store.verify_by_token(req).await })
            })
            .collect();
        for verify in verifies {
            let outcome = verify.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(outcome, VerifyOutcome::Verified(_)), "{outcome:?}");
        }

        // Waits until the last lane that held the one connection gave it back.
        let mut conn = store.pool().acquire().await.unwrap_or_else(|e| panic!("{e}"));
        for (setting, default) in [
            ("plan_cache_mode", "auto"),
            ("enable_seqscan", "on"),
            ("enable_hashjoin", "on"),
            ("enable_mergejoin", "on"),
        ] {
            let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
                .fetch_one(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(value, default, "{setting} left as a lane set it");
        }
        // In a transaction begun before this statement, now() is its start. (A
        // simple query: the extended protocol restarts the statement's clock
        // between its messages.)
        let row = sqlx::raw_sql("SELECT now() <> statement_timestamp()")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let in_transaction: bool = sqlx::Row::try_get(&row, 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(!in_transaction, "a lane left a transaction open");
    }

    /// Waits until `count` writes are queued behind the held lanes.
    async fn until_waiting(store: &PgStore, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.writes_waiting() < count {
            assert!(tokio::time::Instant::now() < deadline, "only {} of {count} writes queued", store.writes_waiting());
            tokio::task::yield_now().await;
        }
    }

    /// Sends `writes` while every lane is held, so they gather into batches,
    /// then lets the lanes go; returns their answers in order.
    async fn in_batches<T, F>(store: &PgStore, writes: Vec<F>) -> Vec<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let held = store.hold_writes().await;
        let count = writes.len();
        let tasks: Vec<_> = writes.into_iter().map(tokio::spawn).collect();
        until_waiting(store, count).await;
        drop(held);
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap_or_else(|e| panic!("{e}")));
        }
        answers
    }

    /// Starts, verifies and delivery outcomes that arrive together are
    /// written by the lanes' batched statements (not only by the one-by-one
    /// path the other tests may take when they happen not to overlap), and
    /// what those statements wrote is right.
    pub async fn writes_held_together_are_written_by_the_batched_statements() {
        let (store, _database) = fresh().await;
        let project_id = project(&store).await;
        let logins: Vec<_> =
            (0..12).map(|i| new_login(&project_id, &format!("b{i}@example.com"), &format!("b{i}"), T0)).collect();
        let email_ids: Vec<_> = logins.iter().map(|l| l.email_id.clone()).collect();
        let starts = logins.into_iter().map(|login| {
            let store = store.clone();
            async move { store.start_login(login).await }
        });
        for outcome in in_batches(&store, starts.collect()).await {
            assert_eq!(outcome.unwrap_or_else(|e| panic!("{e}")), StartOutcome::Started);
        }
        assert_eq!(store.batched_counts(), BatchedCounts { starts: 12, ..BatchedCounts::default() });

        let lease = Lease { owner: "w".into(), now: T0, until: T0.plus_seconds(60) };
        assert_eq!(store.claim_emails(lease, 100).await.unwrap_or_else(|e| panic!("{e}")).len(), 12);
        let outcomes = email_ids.into_iter().map(|email_id| {
            let store = store.clone();
            async move { store.record_delivery(&email_id, "w", DeliveryResult::Sent { at: T0.plus_seconds(1) }).await }
        });
        for recorded in in_batches(&store, outcomes.collect()).await {
            assert!(recorded.unwrap_or_else(|e| panic!("{e}")));
        }
        assert_eq!(store.batched_counts().deliveries, 12);

        let verifies = (0..12).map(|i| {
            let (store, req) = (store.clone(), by_token(&project_id, &format!("b{i}"), T0.plus_seconds(2)));
            async move { store.verify_by_token(req).await }
        });
        for (i, outcome) in in_batches(&store, verifies.collect()).await.into_iter().enumerate() {
            match outcome.unwrap_or_else(|e| panic!("{e}")) {
                VerifyOutcome::Verified(v) => assert_eq!(v.user.email, format!("b{i}@example.com")),
                VerifyOutcome::Failed(f) => panic!("verify {i} failed: {f:?}"),
            }
        }
        // Spread over the verify lanes, each of which wrote its share at once.
        assert_eq!(store.batched_counts().verifies, 12);
        assert_eq!(store.batch_fallbacks(), 0, "a batch was rolled back and its jobs run one by one");
    }

    /// Code sends and code verifies that arrive together are written by
    /// the lanes' batched statements (`batch/otp.rs`), which reach the same
    /// decisions as one at a time: a send to an address whose window is full
    /// is refused inside the batch, a wrong code and the second verify of a
    /// code fall to the one-by-one path and are refused there.
    pub async fn code_sends_and_verifies_held_together_are_written_by_the_batched_statements() {
        let (store, _database) = fresh().await;
        let project_id = project(&store).await;
        let full = "full@example.com";
        let mut full_codes = Vec::new();
        for _ in 0..3 {
            let otp = new_otp(&project_id, full, "full", T0);
            full_codes.push(otp.id.clone());
            assert_eq!(store.send_otp(otp).await.unwrap_or_else(|e| panic!("{e}")), StartOutcome::Started);
        }
        let mut otps: Vec<_> =
            (0..12).map(|i| new_otp(&project_id, &format!("c{i}@example.com"), &format!("c{i}"), T0)).collect();
        otps.push(new_otp(&project_id, full, "full", T0));
        let ids: Vec<_> = otps.iter().map(|o| o.id.clone()).collect();
        let sends = otps.into_iter().map(|otp| {
            let store = store.clone();
            async move { store.send_otp(otp).await }
        });
        let outcomes: Vec<_> = in_batches(&store, sends.collect())
            .await
            .into_iter()
            .map(|o| o.unwrap_or_else(|e| panic!("{e}")))
            .collect();
        for outcome in &outcomes[..12] {
            assert_eq!(*outcome, StartOutcome::Started);
        }
        assert!(
            matches!(outcomes[12], StartOutcome::RateLimited { limit: LimitKind::Recipient, .. }),
            "{:?}",
            outcomes[12]
        );
        assert_eq!(store.batched_counts().otp_sends, 13);
        assert_eq!(store.batch_fallbacks(), 0, "the sends' batch was rolled back and its jobs run one by one");

        let now = T0.plus_seconds(2);
        let plain = |id: &passgate_core::OtpId, code: &str| {
            let mut req = code_req(&project_id, id, code, now);
            req.session = None;
            req
        };
        let mut reqs: Vec<_> = (0..12).map(|i| plain(&ids[i], &format!("c{i}"))).collect();
        reqs.push(plain(&ids[0], "c0"));
        reqs.push(plain(&full_codes[0], "wrong"));
        let verifies = reqs.into_iter().map(|req| {
            let store = store.clone();
            async move { store.verify_otp(req).await }
        });
        let outcomes: Vec<_> = in_batches(&store, verifies.collect())
            .await
            .into_iter()
            .map(|o| o.unwrap_or_else(|e| panic!("{e}")))
            .collect();
        for (i, outcome) in outcomes[1..12].iter().enumerate() {
            match outcome {
                OtpVerifyOutcome::Verified(v) => assert_eq!(v.user.email, format!("c{}@example.com", i + 1)),
                other => panic!("verify {}: {other:?}", i + 1),
            }
        }
        // Code 0 twice: one consumes it, the other learns it is used.
        let twice = [&outcomes[0], &outcomes[12]];
        assert_eq!(twice.iter().filter(|o| matches!(o, OtpVerifyOutcome::Verified(_))).count(), 1, "{twice:?}");
        assert_eq!(
            twice.iter().filter(|o| matches!(o, OtpVerifyOutcome::Failed(OtpFailure::Used { .. }))).count(),
            1,
            "{twice:?}"
        );
        assert_eq!(outcomes[13], OtpVerifyOutcome::Failed(OtpFailure::Invalid));
        assert_eq!(store.batched_counts().otp_verifies, 12);
        assert_eq!(store.batch_fallbacks(), 0, "the verifies' batch was rolled back and its jobs run one by one");
    }
}

/// Readiness follows the migrations (src/database.rs).
mod database {
    use passgate_store::Database;
    use passgate_testkit::TempDatabase;

    use super::{fresh, instance};

    pub async fn readiness_needs_every_migration() {
        let (store, database) = fresh().await;
        store.ready().await.unwrap_or_else(|e| panic!("{e}"));
        // As if the newest migration had not run: its record gone.
        let conn_store = instance(&database.url).await;
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
            .execute(conn_store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let refused = store.ready().await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("lacks migration"), "{refused}");
        // A database with no migrations at all is not ready either.
        let empty = TempDatabase::postgres().await;
        assert!(instance(&empty.url).await.ready().await.is_err());
    }

    /// Migration 0013 indexes only the emails that have a login (a code's
    /// email has none). A link's status joins its login to its email by the
    /// login's id (src/logins.rs, `get_login`): planned generic, that join
    /// must still be able to reach the email through the partial index, whose
    /// condition the join's equality implies (sequential scans off: on the
    /// empty tables here a scan would be the cheaper plan).
    pub async fn a_links_email_is_found_through_the_index_of_emails_with_a_login() {
        let (store, _database) = fresh().await;
        let mut conn = store.pool().acquire().await.unwrap_or_else(|e| panic!("{e}"));
        for statement in [
            "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off",
            "PREPARE link_status AS SELECT l.id, o.status FROM logins l LEFT JOIN outbox o ON o.login_id = l.id \
             WHERE l.project_id = $1 AND l.id = $2",
        ] {
            sqlx::raw_sql(statement).execute(&mut *conn).await.unwrap_or_else(|e| panic!("{e}"));
        }
        let lines: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE link_status(NULL, NULL)")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let plan = lines.join("\n");
        assert!(plan.contains("Index Scan using outbox_by_login"), "the email is not probed by its login:\n{plan}");
        assert!(!plan.contains("Seq Scan on outbox"), "the outbox is scanned:\n{plan}");
        let indexed: String = sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE indexname = 'outbox_by_login'")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(indexed.contains("WHERE (login_id IS NOT NULL)"), "{indexed}");
        sqlx::raw_sql("DEALLOCATE link_status; RESET plan_cache_mode; RESET enable_seqscan")
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `sslmode=require` in the URL: the store's connections are encrypted
    /// (docs/configuration.md says what is supported).
    pub async fn tls_is_used_when_the_url_asks_for_it() {
        let database = TempDatabase::postgres().await;
        for (mode, encrypted) in [("require", true), ("disable", false)] {
            let separator = if database.url.contains('?') { '&' } else { '?' };
            let store = instance(&format!("{}{separator}sslmode={mode}", database.url)).await;
            let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ssl, encrypted, "sslmode={mode}");
            store.close().await;
        }
    }
}

/// The API-key cache (src/key_cache.rs) on two instances of one database.
/// Entries are kept for an hour here, so only what the cache hears can make
/// an instance see another's change.
mod key_cache {
    use std::time::Duration;

    use passgate_core::{ProjectId, Timestamp, sha256};
    use passgate_store::conformance::{project, settings};
    use passgate_store::{AuthenticatedKey, Database, Projects};
    use passgate_store_postgres::{LISTENER_APPLICATION_NAME, PgStore};
    use passgate_testkit::TempDatabase;

    use super::instance;

    const PATIENCE: Duration = Duration::from_secs(10);

    async fn lookup(store: &PgStore, key_hash: &[u8; 32]) -> AuthenticatedKey {
        let found = store.find_api_key(key_hash).await.unwrap_or_else(|e| panic!("{e}"));
        found.unwrap_or_else(|| panic!("key not found"))
    }

    /// Two instances; `reader` has looked the project's first key up, with
    /// its listener live, so the key is in its cache.
    async fn two_instances() -> (PgStore, PgStore, ProjectId, TempDatabase) {
        let database = TempDatabase::postgres().await;
        let writer = instance(&database.url).await;
        writer.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        let reader = instance(&database.url).await;
        reader.set_key_cache_max_age(Duration::from_secs(3600));
        let project_id = project(&writer).await;
        let key_hash = sha256(project_id.as_str().as_bytes());
        lookup(&reader, &key_hash).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !reader.key_cache_is_live() {
            assert!(tokio::time::Instant::now() < deadline, "the key cache's listener never connected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lookup(&reader, &key_hash).await;
        (writer, reader, project_id, database)
    }

    /// Runs SQL behind the stores' backs.
    async fn execute(database: &TempDatabase, sql: &str, project_id: &ProjectId) -> u64 {
        run_sql(database, sql, project_id, false).await
    }

    /// Runs SQL behind the stores' backs with triggers off (the session's
    /// replica role skips them), so that no change is announced.
    async fn execute_unannounced(database: &TempDatabase, sql: &str, project_id: &ProjectId) -> u64 {
        run_sql(database, sql, project_id, true).await
    }

    async fn run_sql(database: &TempDatabase, sql: &str, project_id: &ProjectId, unannounced: bool) -> u64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap_or_else(|e| panic!("{e}"));
        if unannounced {
            sqlx::query("SET session_replication_role = replica")
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let done =
            sqlx::query(sql).bind(project_id.as_str()).execute(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
        done.rows_affected()
    }

    /// Looks the key up on `store` until `seen` holds, or fails after a while.
    async fn until_seen(store: &PgStore, key_hash: &[u8; 32], what: &str, seen: impl Fn(&AuthenticatedKey) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !seen(&lookup(store, key_hash).await) {
            assert!(tokio::time::Instant::now() < deadline, "{what} never reached the other instance");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn another_instance_hears_of_revocations_and_project_changes() {
        let (writer, reader, project_id, _database) = two_instances().await;
        let key_hash = sha256(project_id.as_str().as_bytes());

        let mut changed = settings("Renamed");
        changed.redirect_urls = vec!["https://renamed.example/cb".into()];
        writer.update_project(&project_id, changed.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        until_seen(&reader, &key_hash, "a project change", |k| k.project.settings == changed).await;

        let keys = writer.list_api_keys(&project_id).await.unwrap_or_else(|e| panic!("{e}"));
        writer.revoke_api_key(&keys[0].id, Timestamp(1_700_000_000_000)).await.unwrap_or_else(|e| panic!("{e}"));
        until_seen(&reader, &key_hash, "a revocation", |k| k.revoked_at.is_some()).await;
        assert!(reader.key_cache_is_live());
    }

    /// The announcement is a trigger's, not the store's code's: a change made
    /// in plain SQL, by an operator or by a write added later, reaches every
    /// instance too.
    pub async fn changes_made_in_plain_sql_are_announced_too() {
        let (_writer, reader, project_id, database) = two_instances().await;
        let key_hash = sha256(project_id.as_str().as_bytes());
        execute(&database, "UPDATE projects SET name = 'Edited' WHERE id = $1", &project_id).await;
        until_seen(&reader, &key_hash, "a rename in plain SQL", |k| k.project.settings.name == "Edited").await;
        execute(&database, "UPDATE api_keys SET revoked_at = 7 WHERE project_id = $1", &project_id).await;
        until_seen(&reader, &key_hash, "a revocation in plain SQL", |k| k.revoked_at == Some(Timestamp(7))).await;
        assert!(reader.key_cache_is_live(), "heard, not expired: the listener stayed up");
    }

    /// Notifications sent while the listener's connection is down are lost;
    /// the cache must not trust what it held before the reconnection.
    pub async fn a_lost_listener_connection_empties_the_cache() {
        let (writer, reader, project_id, database) = two_instances().await;
        let key_hash = sha256(project_id.as_str().as_bytes());
        // Cut the listener, then revoke unannounced, as if the notification
        // had gone out during the outage.
        let cut = execute(
            &database,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = '{LISTENER_APPLICATION_NAME}' AND datname = current_database()
                   AND $1 <> ''"
            ),
            &project_id,
        )
        .await;
        assert_eq!(cut, 1, "one listener for the one instance that looked a key up");
        execute_unannounced(&database, "UPDATE api_keys SET revoked_at = 1 WHERE project_id = $1", &project_id).await;
        until_seen(&reader, &key_hash, "a change made while the listener was cut", |k| k.revoked_at.is_some()).await;
        drop(writer);
    }

    /// Without the listener's news, an entry still expires.
    pub async fn entries_expire_without_news() {
        let (_writer, reader, project_id, database) = two_instances().await;
        let key_hash = sha256(project_id.as_str().as_bytes());
        reader.set_key_cache_max_age(Duration::from_millis(50));
        lookup(&reader, &key_hash).await;
        execute_unannounced(&database, "UPDATE api_keys SET revoked_at = 1 WHERE project_id = $1", &project_id).await;
        until_seen(&reader, &key_hash, "a change nobody announced", |k| k.revoked_at.is_some()).await;
    }
}
