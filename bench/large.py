#!/usr/bin/env python3
"""Large tables (issue 20, item 5): fill a passgate database with millions of
past logins, users and events, in SQL, and measure the reads that must not
slow down with them. Used by bench/large.sh; standard library only.

  large.py load sqlite:///path/to.db ROWS       # or postgres://…  (psql)
  large.py probe BASE_URL API_KEY OUT.json      # latency of the reads
  large.py report OUT_DIR BENCHMARKS.md DB…     # the table, in both files

What `load` writes, for the database's one project: ROWS logins of the
past six days (inside the default 7-day login retention, so the sweeper
keeps them: the steady state of a busy project), nine in ten used, each
with a token hash of its own; ROWS/10 users (ten logins each); ROWS events
of the past 80 days (inside the default 90-day event retention), in the
mix a link login writes (auth.started, email.sent, auth.verified). Ids have
the shape and time order of the server's (UUIDv7 after a prefix), so new
rows land where they would after months of real use: at the right end of
every index, after all of these.
"""

import json
import os
import statistics
import subprocess
import sqlite3
import sys
import time
import urllib.request

import sections

DAY = 86_400_000


def load_sql(dialect, project, rows, now):
    users = max(rows // 10, 1)
    if dialect == "postgres":
        def ident(prefix, t, n):
            return f"'{prefix}_' || lpad(to_hex({t}), 12, '0') || '7' || lpad(to_hex({n}), 19, '0')"
        token = "sha256(('large-' || g)::bytea)"
        pick = "(ARRAY['auth.started','email.sent','auth.verified'])[1 + g % 3]"
        src = "FROM generate_series(1::bigint, {n}) AS g"
    else:
        def ident(prefix, t, n):
            return f"'{prefix}_' || printf('%012x', {t}) || '7' || printf('%019x', {n})"
        token = "randomblob(32)"
        pick = "CASE g % 3 WHEN 0 THEN 'auth.started' WHEN 1 THEN 'email.sent' ELSE 'auth.verified' END"
        src = "FROM (WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) SELECT g FROM s)"
    # Times spread evenly: users over ten days three months ago, logins
    # over the past six days, events over the past 80 days.
    def user_t(n):
        return f"({now - 90 * DAY} + {n} * {10 * DAY // users})"
    login_t = f"({now - 6 * DAY} + g * {(6 * DAY - 3_600_000) // rows})"
    event_t = f"({now - 80 * DAY} + g * {(80 * DAY - 3_600_000) // rows})"
    user_of = f"(g % {users} + 1)"
    return [
        f"""INSERT INTO users (id, project_id, email, created_at)
            SELECT {ident('usr', user_t('g'), 'g')}, '{project}', 'l' || g || '@large.test', {user_t('g')}
            {src.format(n=users)}""",
        f"""INSERT INTO logins (id, project_id, email, token_hash, validation_url, created_at, expires_at, used_at)
            SELECT {ident('lgn', login_t, 'g')}, '{project}', 'l' || {user_of} || '@large.test', {token},
                   'http://localhost:3000/auth/callback', {login_t}, {login_t} + 900000,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE {login_t} + 20000 END
            {src.format(n=rows)}""",
        f"""INSERT INTO events (id, project_id, kind, user_id, login_id, email, reason, created_at)
            SELECT {ident('evt', event_t, 'g')}, '{project}', {pick},
                   CASE WHEN g % 3 = 2 THEN {ident('usr', user_t(user_of), user_of)} END,
                   {ident('lgn', event_t, 'g')}, 'l' || {user_of} || '@large.test',
                   CASE WHEN g % 3 = 2 THEN 'email_link' END, {event_t}
            {src.format(n=rows)}""",
    ]


def load(url, rows):
    now = int(time.time() * 1000)
    started = time.monotonic()
    if url.startswith("sqlite://"):
        conn = sqlite3.connect(url[len("sqlite://"):], timeout=60)
        (project,) = conn.execute("SELECT id FROM projects ORDER BY created_at LIMIT 1").fetchone()
        for sql in load_sql("sqlite", project, rows, now):
            conn.execute(sql)
            conn.commit()
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    else:
        project = subprocess.check_output(
            ["psql", url, "-Atqc", "SELECT id FROM projects ORDER BY created_at LIMIT 1"], text=True).strip()
        for sql in load_sql("postgres", project, rows, now):
            subprocess.run(["psql", url, "-qv", "ON_ERROR_STOP=1", "-c", sql], check=True)
        # What a month of autovacuum would have done by now.
        subprocess.run(["psql", url, "-qc", "VACUUM ANALYZE users, logins, events"], check=True)
        # The load's dirty pages written out now, not during the measurement.
        subprocess.run(["psql", url, "-qc", "CHECKPOINT"], check=True)
    print(f"loaded {rows} logins, {rows} events, {max(rows // 10, 1)} users in {time.monotonic() - started:.0f} s")


def request(base, key, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def timed(base, key, path, n):
    """Milliseconds per request of `n` sequential GETs (after 20 unmeasured)."""
    samples = []
    for i in range(n + 20):
        t = time.perf_counter()
        request(base, key, "GET", path)
        if i >= 20:
            samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {"p50": statistics.median(samples), "p99": samples[int(len(samples) * 0.99) - 1]}


def probe(base, key, out, n=500):
    login = request(base, key, "POST", "/api/v2/auth/start",
                    {"email": "probe@large.test", "validationUrl": "http://localhost:3000/auth/callback"})
    first = request(base, key, "GET", "/api/v2/events?limit=50")
    user = next((e.get("userId") for e in first.get("events", []) if e.get("userId")), None)
    result = {
        "login": timed(base, key, f"/api/v2/auth/logins/{login['loginId']}", n),
        "events": timed(base, key, "/api/v2/events?limit=50", n),
        "eventsByType": timed(base, key, "/api/v2/events?type=auth.verified&limit=50", n),
    }
    if user:
        result["eventsByUser"] = timed(base, key, f"/api/v2/events?userId={user}&limit=50", n)
    json.dump(result, open(out, "w"), indent=1)
    print(json.dumps(result))


def report(out_dir, benchmarks, dbs):
    lines = ["| db | rows | logins/s | verify p99 | GET login p50 / p99 | events p50 / p99 | by type p50 / p99 | by user p50 / p99 |",
             "|---|---|---|---|---|---|---|---|"]
    rows_loaded = open(os.path.join(out_dir, "large-rows.txt")).read().strip()
    for db in dbs:
        for phase, label in (("empty", "0"), ("large", rows_loaded)):
            run = json.load(open(os.path.join(out_dir, f"large-{db}-{phase}.json")))
            reads = json.load(open(os.path.join(out_dir, f"large-{db}-{phase}-reads.json")))
            cell = lambda k: f'{reads[k]["p50"]:.2f} / {reads[k]["p99"]:.2f} ms' if k in reads else "–"
            lines.append(f'| {db} | {int(label):,} | {run["loginsPerSecond"]:,.1f} | '
                         f'{run["latencyMs"]["verify"]["p99"]:.1f} ms | {cell("login")} | {cell("events")} | '
                         f'{cell("eventsByType")} | {cell("eventsByUser")} |')
        empty = json.load(open(os.path.join(out_dir, f"large-{db}-empty.json")))["loginsPerSecond"]
        large = json.load(open(os.path.join(out_dir, f"large-{db}-large.json")))["loginsPerSecond"]
        lines.append(f"| {db}: large ÷ empty | | {large / empty:.0%} ({'met' if large >= 0.9 * empty else 'NOT met'}, ≥ 90%) | | | | | |")
    date = os.path.basename(os.path.normpath(out_dir))
    section = "\n".join([
        f"### Large tables, {date}", "",
        "The link flow, 64 users, 5 s warm-up + 30 s, on an empty database and then on the same "
        f"database with {int(rows_loaded):,} past logins, as many events and a tenth as many users "
        "loaded by `bench/large.py` (targets: logins/s within 10%, verify p99 under 20 ms, the reads unchanged). "
        "Reads: 500 sequential requests after 20 unmeasured, one client.", ""] + lines + [""])
    open(os.path.join(out_dir, "large.md"), "w").write(section)
    sections.publish(benchmarks, "large", section)
    print(section)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "load":
        load(args[0], int(args[1]))
    elif command == "probe":
        probe(*args)
    elif command == "report":
        report(args[0], args[1], args[2:])
    else:
        sys.exit(__doc__)
