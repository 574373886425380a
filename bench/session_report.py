#!/usr/bin/env python3
"""The "Session credentials and stamps" section of BENCHMARKS.md from the
rounds bench/session.sh measured: session_report.py DIR DBS USERS DURATION."""
import glob
import json
import os
import sys

import sections

out, dbs, users, duration = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
benchmarks = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")
MODES = ["code", "credential", "stamped"]

rows, medians = [], {}
for db in dbs:
    for mode in MODES:
        runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/session-{db}-{mode}.round*.json"))]
        if not runs:
            continue
        runs.sort(key=lambda r: r["loginsPerSecond"])
        m = medians[(db, mode)] = runs[len(runs) // 2]
        db_us = "–" if m.get("dbCpuMicrosPerLogin") is None else f"{m['dbCpuMicrosPerLogin']:,.0f}"
        whoami = "–" if mode != "stamped" else f"{m['p50Ms']['whoami']:.1f} / {m['p99Ms']['whoami']:.1f}"
        rounds = ", ".join(f"{r['loginsPerSecond']:,.1f}" for r in runs)
        rows.append(
            f"| {db} | {mode} | {m['loginsPerSecond']:,.1f} | {m['serverCpuMicrosPerLogin']:,.0f} | {db_us} | "
            f"{m['p50Ms']['verify']:.1f} / {m['p99Ms']['verify']:.1f} | {whoami} | {rounds} |"
        )


def cost(db, more, less, key):
    a, b = medians.get((db, more)), medians.get((db, less))
    if not a or not b or a.get(key) is None or b.get(key) is None:
        return None
    return a[key] - b[key]


lines = [
    f"Measured by `bench/session.sh` on {os.path.basename(out.rstrip('/'))}: the project's own load tool "
    "(`otp-session-load`, crates/passgate-bench) runs the OTP flow "
    f"at {users} users for {duration} s a round in three modes, which take turns; each row is the mode's "
    "median round. `code`: send, the code from the email, verify (the kit's otp flow). `credential`: the same "
    "with a `targetPublicKey`, so the verify mints a session key and seals it to the target, and the client "
    "opens the bundle. `stamped`: then a `session/whoami` signed with the session key by Turnkey's stamper. "
    "CPU is per login, in the server and (PostgreSQL) in the database's processes. The client's own P-256 "
    "work (a target key pair, opening the bundle, signing the stamp) runs on the same two cores, so "
    "logins/s falls further than the server's CPU alone explains; the CPU columns are the server's cost.",
    "",
    "| db | mode | logins/s | server µs/login | db µs/login | verify p50 / p99 ms | whoami p50 / p99 ms "
    "| rounds (logins/s) |",
    "|---|---|---|---|---|---|---|---|",
    *rows,
    "",
]
for db in dbs:
    credential = cost(db, "credential", "code", "serverCpuMicrosPerLogin")
    stamp = cost(db, "stamped", "credential", "serverCpuMicrosPerLogin")
    if credential is None or stamp is None:
        continue
    text = (
        f"- **{db}**: a session credential costs the server {credential:,.0f} µs of CPU a login, "
        f"and a stamped request after it {stamp:,.0f} µs"
    )
    db_credential = cost(db, "credential", "code", "dbCpuMicrosPerLogin")
    db_stamp = cost(db, "stamped", "credential", "dbCpuMicrosPerLogin")
    if db_credential is not None and db_stamp is not None:
        text += f"; the database {db_credential:,.0f} µs and {db_stamp:,.0f} µs"
    lines.append(text + ".")
body = "\n".join(lines)
with open(os.path.join(out, "session.md"), "w") as f:
    f.write(body + "\n")
sections.publish(benchmarks, "session", body)
print(body)
