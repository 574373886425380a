-- Per-project send counters, one row per project and minute: the project's
-- "emails per minute" limit is checked against two rows (this minute and the
-- previous one) instead of counting every send of the last minute.
CREATE TABLE project_send_counts (
    project_id  TEXT NOT NULL REFERENCES projects (id),
    minute      INTEGER NOT NULL,          -- milliseconds since the epoch / 60000
    sent        INTEGER NOT NULL,
    PRIMARY KEY (project_id, minute)
) STRICT;
