-- outbox_by_project was never read; every queued email paid for it.
DROP INDEX IF EXISTS outbox_by_project;
