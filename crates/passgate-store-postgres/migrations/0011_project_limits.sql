-- A project's limits and event retention become its settings (they were
-- constants): link and invite emails per address per 15 minutes, starts per
-- end-user IP per minute, one-time code sends per address per 3 minutes, and
-- how long its events are kept in seconds (0: forever). Existing projects
-- keep the values they had.
ALTER TABLE projects ADD COLUMN emails_per_recipient BIGINT NOT NULL DEFAULT 5;
ALTER TABLE projects ADD COLUMN starts_per_ip BIGINT NOT NULL DEFAULT 30;
ALTER TABLE projects ADD COLUMN otp_sends_per_email BIGINT NOT NULL DEFAULT 3;
ALTER TABLE projects ADD COLUMN event_retention_seconds BIGINT NOT NULL DEFAULT 7776000; -- 90 days
