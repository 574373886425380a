-- Invites, organizations and memberships.
--
-- An invite is carried by a login (its token, expiry, queued email and send
-- limits); `logins.invite_id` marks such a login, so that the single-use
-- UPDATE of a plain verify never consumes one: an invite's token is
-- accepted by the invite path, which also grants its membership.
ALTER TABLE logins ADD COLUMN invite_id TEXT;
ALTER TABLE events ADD COLUMN invite_id TEXT;

CREATE TABLE invites (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects (id),
    login_id          TEXT NOT NULL UNIQUE,
    email             TEXT NOT NULL,
    metadata          TEXT,              -- compact JSON object, at most 4 KiB; returned only by verify
    invited_by        TEXT,
    organization_id   TEXT,
    role              TEXT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    accepted_at       BIGINT,
    accepted_user_id  TEXT,
    revoked_at        BIGINT
);
CREATE INDEX invites_by_project ON invites (project_id, id);
CREATE INDEX invites_by_email ON invites (project_id, email);

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX organizations_by_project ON organizations (project_id, id);

CREATE TABLE memberships (
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    user_id          TEXT NOT NULL REFERENCES users (id),
    project_id       TEXT NOT NULL REFERENCES projects (id),
    role             TEXT NOT NULL,
    joined_at        BIGINT NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (project_id, user_id);
