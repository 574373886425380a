-- Fewer writes for each login, each measured under the benchmark's OTP load
-- (bench/NOTES.md, item 22).
--
-- 1. The tables a login, a code, an email or a session writes a row to lose
-- their foreign key to projects. Each such row cost PostgreSQL a check of
-- its own when its statement ended: a query on projects that also locks
-- the project's row (FOR KEY SHARE, written to the row and the WAL), which
-- every concurrent writer of the project then shares. Profiled under the
-- benchmark's OTP load, those checks were about a tenth of the database's
-- CPU.
--
-- What the keys guarded cannot happen here: projects are never deleted,
-- and every one of these rows is written with the id of a project the same
-- request was authenticated for (its API key's project) or of a row that
-- already carried it. The configuration tables (API keys, webhook
-- endpoints, invites, organizations, memberships, the send counters) keep
-- theirs: they are written rarely, and there the check costs nothing.
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_project_id_fkey;
ALTER TABLE logins DROP CONSTRAINT IF EXISTS logins_project_id_fkey;
ALTER TABLE otp_codes DROP CONSTRAINT IF EXISTS otp_codes_project_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_project_id_fkey;
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_project_id_fkey;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_project_id_fkey;
ALTER TABLE code_budgets DROP CONSTRAINT IF EXISTS code_budgets_project_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_project_id_fkey;

-- 2. Only emails of a login are found by their login (a link's status);
-- a code's email has none, and its index entry, written with the email and
-- again when its outcome is settled (a new row version), was never read.
DROP INDEX outbox_by_login;
CREATE INDEX outbox_by_login ON outbox (login_id) WHERE login_id IS NOT NULL;

-- 3. A code or a link is updated once when used (or, a code, on a wrong
-- guess): with room left on its page the new version stays there and no
-- index is written (a HOT update). Full pages made about half of those
-- updates write every index of the table (two for codes, four for links);
-- with 30% of each page kept free, 15% of the codes' did.
ALTER TABLE otp_codes SET (fillfactor = 70);
ALTER TABLE logins SET (fillfactor = 70);
