#!/usr/bin/env python3
"""Writes BENCHMARKS.md from one bench/run.sh results folder: report.py DIR."""
import glob
import json
import os
import platform
import re
import subprocess
import sys

out = sys.argv[1]


def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def fmt(x, digits=1):
    return "–" if x is None else f"{x:,.{digits}f}"


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.1f}×"


def row_of(r):
    if not r:
        return None
    lat = r["latencyMs"]
    window = r["windowSeconds"] or 1.0
    procs = r.get("processes") or []
    server = procs[0] if procs else None
    db = procs[1] if len(procs) > 1 else None
    return {
        "rate": r["loginsPerSecond"],
        "errors": sum(r["errors"].values()),
        "warnings": sum((r.get("warnings") or {}).values()),
        "start": (lat["start"]["p50"], lat["start"]["p99"]),
        "email": (lat["emailArrival"]["p50"], lat["emailArrival"]["p99"]),
        "verify": (lat["verify"]["p50"], lat["verify"]["p99"]),
        "cycle": (lat["cycle"]["p50"], lat["cycle"]["p99"]),
        "rss": server["peakRssKib"] / 1024 if server and server.get("peakRssKib") else None,
        "server_cores": server["cpuSeconds"] / window if server else None,
        "db_cores": db["cpuSeconds"] / window if db else None,
        "loadgen_cores": r["loadgenCpuSeconds"] / window,
        "busy": r.get("machineBusyCores"),
        "steal": r.get("machineStealCores"),
    }


def pair(p):
    return f"{fmt(p[0])} / {fmt(p[1])}"


runs = {}
rounds = {}  # (target, db, flow, users) -> [row of round 1, round 2, ...], for rows measured in rounds
FLOWS = ("link", "otp")
for path in glob.glob(os.path.join(out, "*.json")):
    name = os.path.basename(path)[:-5]
    m = re.match(r"(passgate|better-auth)-(sqlite|postgres)-(link|otp)-(\d+)(?:\.round(\d+))?$", name)
    if not m:
        continue
    key = (m.group(1), m.group(2), m.group(3), int(m.group(4)))
    if m.group(5):
        rounds.setdefault(key, {})[int(m.group(5))] = row_of(load(path))
    else:
        runs[key] = row_of(load(path))
for key, by_number in rounds.items():
    ordered = [by_number[n] for n in sorted(by_number) if by_number[n]]
    rounds[key] = ordered
    if ordered:
        # The round with the median rate (the lower of the two middle ones for an even count) stands for the row.
        runs[key] = sorted(ordered, key=lambda r: r["rate"])[(len(ordered) - 1) // 2]

lines = []
w = lines.append
w("# Benchmarks")
w("")
# A folder is named by its run's date, with a suffix for a second run that day.
folder = os.path.basename(os.path.normpath(out))
w(f"Measured by `bench/run.sh` on {folder[:10]} (UTC). Raw reports: `bench/results/{folder}/`.")
w("")
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
mem = sh("awk '/MemTotal/{printf \"%.0f GiB\", $2/1048576}' /proc/meminfo")
pg = sh("psql postgres://postgres@127.0.0.1:5432/postgres -tAc 'show server_version' 2>/dev/null")
w(f"**Machine**: {os.cpu_count()} vCPUs ({cpu or 'unknown CPU'}), {mem}, {platform.system()} {platform.release()}, "
  f"PostgreSQL {pg or '?'} (stock settings: `synchronous_commit=on`, `fsync=on`), SQLite in WAL mode with "
  "`synchronous=FULL` (passgate's setting). The load generator, its SMTP sink, the server and the database share the "
  "machine. Every run: a fresh server process and an emptied database, "
  "the kit's flows — `link` (start → email over SMTP → verify) and `otp` (send → email with the code → verify) — "
  "with the same loadgen flags for both targets.")
w("")
w("passgate's send limit is raised for the run with the documented project setting (`--emails-per-minute 1000000`); "
  "every other check stays on. better-auth runs with its rate limiting off, as the kit's peer documents.")
w("")
w("## Logins per second and latency")
w("")
w("Latencies in ms (p50 / p99). `email` is start response → message received by the sink. "
  "RSS is the server's peak (`VmHWM`). Ratio = passgate ÷ better-auth on the same database and concurrency. "
  "Steal is CPU time the hypervisor gave to other guests during the row's window: this is a shared VM; a row "
  "with more than 0.15 core of steal is measured again, up to three times (`MAX_STEAL`, `TRIES` in `bench/run.sh`), "
  "and the table shows the run that was kept.")
if rounds:
    w("")
    w("Rows measured in rounds (see below) show each side's median round: every figure in the row is that round's, "
      "and the ratio is the two medians'.")
w("")
w("| flow | target | db | users | logins/s | ratio | errors | start | email | verify | cycle | peak RSS MiB | server cores | db cores | loadgen cores | steal cores |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for flow in FLOWS:
  for db in ("sqlite", "postgres"):
    for users in sorted({k[3] for k in runs if k[1] == db and k[2] == flow}):
        for target in ("passgate", "better-auth"):
            r = runs.get((target, db, flow, users))
            if not r:
                continue
            peer = runs.get(("better-auth", db, flow, users))
            rat = ratio(r["rate"], peer["rate"]) if target == "passgate" and peer else ""
            w(f"| {flow} | {target} | {db} | {users} | {fmt(r['rate'])} | {rat} | {r['errors']} | {pair(r['start'])} | "
              f"{pair(r['email'])} | {pair(r['verify'])} | {pair(r['cycle'])} | {fmt(r['rss'], 0)} | "
              f"{fmt(r['server_cores'], 2)} | {fmt(r['db_cores'], 2)} | {fmt(r['loadgen_cores'], 2)} | "
              f"{fmt(r['steal'], 2)} |")
w("")

if rounds:
    w("### Rounds")
    w("")
    w("This host's speed drifts by tens of percent within minutes, and both sides drift with it. So the rows the "
      "targets are judged on are measured in rounds (`ROUNDS`, `ROUND_USERS` in `bench/run.sh`): passgate, then "
      "the peer, then passgate again, each round a fresh server and database. Logins/s of every round, in the "
      "order run, and the ratio within each round:")
    w("")
    w("| flow | db | users | passgate | better-auth | ratio by round | ratio of the medians |")
    w("|---|---|---|---|---|---|---|")
    order = ("sqlite", "postgres")  # as in the table above
    for (target, db, flow, users) in sorted((k for k in rounds if k[0] == "passgate"),
                                            key=lambda k: (FLOWS.index(k[2]), order.index(k[1]), k[3])):
        ours = rounds[(target, db, flow, users)]
        kept = runs.get((target, db, flow, users))
        theirs = rounds.get(("better-auth", db, flow, users)) or []
        by_round = [ratio(a["rate"], b["rate"]) for a, b in zip(ours, theirs)]
        peer = runs.get(("better-auth", db, flow, users))
        w(f"| {flow} | {db} | {users} | {', '.join(fmt(r['rate']) for r in ours)} | "
          f"{', '.join(fmt(r['rate']) for r in theirs) or '–'} | {', '.join(by_round) or '–'} | "
          f"{ratio(kept['rate'], peer['rate']) if kept and peer else '–'} |")
    w("")

# Limits.
def raw_sqlite(path):
    for line in open(path) if os.path.exists(path) else []:
        if line.startswith("{"):
            return json.loads(line)
    return None

full = raw_sqlite(os.path.join(out, "raw-sqlite-full.txt"))
normal = raw_sqlite(os.path.join(out, "raw-sqlite-normal.txt"))
pg_lines = open(os.path.join(out, "raw-postgres.txt")).read() if os.path.exists(os.path.join(out, "raw-postgres.txt")) else ""
pg_rates = {int(c): float(t) for c, t in re.findall(r"clients=(\d+): ([\d.]+) scripts/s", pg_lines)}
hello = {}
for path in glob.glob(os.path.join(out, "hello-axum-*.txt")):
    m = re.search(r"Requests/sec:\s+([\d.]+)", open(path).read())
    if m:
        hello[int(re.search(r"-(\d+)\.txt$", path).group(1))] = float(m.group(1))

w("## The limits on this machine")
w("")
w("| what | rate |")
w("|---|---|")
if full:
    w(f"| SQLite alone, WAL, synchronous=FULL: insert+update pairs/s (one commit each) | {fmt(full['pairsPerSecond'], 0)} |")
if normal:
    w(f"| SQLite alone, WAL, synchronous=NORMAL: insert+update pairs/s | {fmt(normal['pairsPerSecond'], 0)} |")
for c, t in sorted(pg_rates.items()):
    w(f"| PostgreSQL alone (pgbench, {c} clients): insert+update pairs/s | {fmt(t, 0)} |")
for c, t in sorted(hello.items()):
    w(f"| axum hello-world JSON (`wrk`, {c} connections): requests/s | {fmt(t, 0)} |")
w("")
best = {db: max([r["rate"] for (t, d, f, u), r in runs.items() if t == "passgate" and d == db and f == "link" and r] or [0])
        for db in ("sqlite", "postgres")}
w("passgate as a fraction of those limits (its best link logins/s; a login is 3 HTTP requests and, on the database, "
  "3 writes — start, delivery outcome, verify — that are group-committed with others, so many logins share one "
  "commit):")
w("")
if full and best["sqlite"]:
    w(f"- SQLite: {fmt(best['sqlite'])} logins/s = {100 * best['sqlite'] / full['pairsPerSecond']:.0f}% of the raw "
      f"insert+update pairs/s at synchronous=FULL.")
if pg_rates and best["postgres"]:
    top = max(pg_rates.values())
    w(f"- PostgreSQL: {fmt(best['postgres'])} logins/s = {100 * best['postgres'] / top:.0f}% of pgbench's best insert+update pairs/s.")
if hello:
    top = max(hello.values())
    b = max(best.values())
    w(f"- HTTP: {fmt(3 * b, 0)} passgate requests/s (3 per login) = {100 * 3 * b / top:.0f}% of the hello-world rate.")
w("")

micro = os.path.join(out, "micro.txt")
if os.path.exists(micro):
    w("## Micro-benchmarks (`cargo bench -p passgate-core`)")
    w("")
    w("```")
    for line in open(micro):
        if re.match(r"^[│├╰ a-z_]", line) and ("│" in line or line.startswith("hot_path")):
            w(line.rstrip())
    w("```")
    w("")

notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
if os.path.exists(notes):
    w(open(notes).read().rstrip())
    w("")
# The long benches' sections (bench/soak.sh, large.sh, scale.sh write
# them; a run of this report must not drop them).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sections  # noqa: E402

for section in sections.included():
    w(section)
    w("")
print("\n".join(lines))
