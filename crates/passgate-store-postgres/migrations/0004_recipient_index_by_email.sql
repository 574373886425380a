-- The per-recipient limit's index leads with the email, not the project.
-- Led by project_id it matched any query that names a project — and a
-- generic plan cached while the table was young (no statistics yet) used it
-- for `project_id = $1 AND id = $2`-style lookups, reading every login of the
-- project on each. Every query that uses this index names both columns.
DROP INDEX logins_by_recipient;
CREATE INDEX logins_by_recipient ON logins (email, project_id, created_at);
