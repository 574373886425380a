-- A counter that moves on with every change to an API key or a project, so
-- the server's in-memory copy of the keys it has seen (with their projects)
-- can tell with one tiny read whether it is still current — also after a
-- change made by another process on the same file, such as the CLI. The
-- triggers move it whatever statement made the change. A new key needs no
-- signal: unknown keys are never kept.
CREATE TABLE key_generation (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    n   INTEGER NOT NULL
) STRICT;
INSERT INTO key_generation (id, n) VALUES (1, 0);

CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys
BEGIN UPDATE key_generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
BEGIN UPDATE key_generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER projects_changed AFTER UPDATE ON projects
BEGIN UPDATE key_generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER projects_deleted AFTER DELETE ON projects
BEGIN UPDATE key_generation SET n = n + 1 WHERE id = 1; END;
