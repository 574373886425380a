-- Wrong codes count per address, across all of its codes (SECURITY S12): a
-- new code does not reset the count; at 10 in a row, codes for the address
-- are refused for 30 s, doubling with each further wrong code up to an hour;
-- a right code (a verified login) removes the row.
CREATE TABLE code_budgets (
    project_id     TEXT NOT NULL REFERENCES projects (id),
    email          TEXT NOT NULL,
    failures       INTEGER NOT NULL,      -- wrong codes in a row
    blocked_until  INTEGER,               -- while in the future, no code is checked
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (project_id, email)
) STRICT, WITHOUT ROWID;
