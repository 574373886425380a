-- Every change to an API key or a project tells every instance, at commit,
-- to forget the keys it holds in memory (the key cache, src/key_cache.rs).
-- A trigger rather than a call in each write: a write added later cannot
-- forget it, and changes made in plain SQL by an operator are announced too.
-- Statement-level, so a statement that changes many rows sends one
-- notification (and PostgreSQL folds identical ones within a transaction).
-- This is the schema's first trigger: PostgreSQL-compatible databases
-- without triggers have no LISTEN/NOTIFY either, which the key cache needs.
CREATE FUNCTION passgate_announce_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('passgate_key_changes', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION passgate_announce_key_change();
CREATE TRIGGER projects_changed AFTER UPDATE OR DELETE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION passgate_announce_key_change();
