"""The soak benchmark's report (see bench/soak.sh).

    soak_report.py OUT FLOW RETAIN USERS DB...   # plot OUT/soak-FLOW.png, write OUT/soak-FLOW.md
    soak_report.py --benchmarks BENCHMARKS.md OUT
        # put every OUT/soak-*.md (and its plot) between the soak markers of
        # BENCHMARKS.md, and keep it in bench/SOAK.md, which bench/report.py
        # includes when it writes BENCHMARKS.md anew

Judged per run, against issue 20's targets: the last five minutes'
logins/s at least 90% of the first five's; the database size and the RSS
flat once retention has caught up, read as: over the second half of the
run, each grows by less than 10% (a plateau with noise, not a trend).
"""

import csv
import os
import sys

import sections



def read(path):
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def mean(values):
    return sum(values) / len(values) if values else 0.0


def judge(rows):
    first = mean([r["logins_per_s"] for r in rows[:5]])
    last = mean([r["logins_per_s"] for r in rows[-5:]])
    half = rows[len(rows) // 2 :]
    growth = lambda key: (half[-1][key] - half[0][key]) / half[0][key] if half and half[0][key] else 0.0
    return {
        "first": first,
        "last": last,
        "ratio": last / first if first else 0.0,
        "db_growth": growth("db_mib"),
        "rss_growth": growth("rss_mib"),
    }


def plot(out, flow, runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [
        ("logins_per_s", "logins/s"),
        ("verify_p99_ms", "verify p99 (ms)"),
        ("rss_mib", "server RSS (MiB)"),
        ("db_mib", "database on disk (MiB)"),
    ]
    for ax, (key, title) in zip(axes.flat, panels):
        for db, rows in runs.items():
            ax.plot([r["minute"] for r in rows], [r[key] for r in rows], marker=".", label=db)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("minute")
    axes[0][0].legend()
    fig.suptitle(f"passgate soak: {flow} flow")
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"soak-{flow}.png"), dpi=90)


def section(out, flow, retain, users, dbs):
    runs = {db: read(os.path.join(out, f"soak-{flow}-{db}.csv")) for db in dbs}
    plot(out, flow, runs)
    lines = [
        f"### {flow} flow, {users} users, retention {retain}",
        "",
        f"![soak, {flow} flow](bench/results/{os.path.basename(out)}/soak-{flow}.png)",
        "",
        "| db | minutes | first 5 min logins/s | last 5 min logins/s | last ÷ first (≥ 90%) | DB size, 2nd half | RSS, 2nd half | verify p99, last 5 min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for db, rows in runs.items():
        j = judge(rows)
        p99 = mean([r["verify_p99_ms"] for r in rows[-5:]])
        lines.append(
            f"| {db} | {len(rows)} | {j['first']:,.1f} | {j['last']:,.1f} | {j['ratio']:.0%} "
            f"{'met' if j['ratio'] >= 0.9 else 'NOT met'} | {j['db_growth']:+.0%} "
            f"({rows[len(rows) // 2]['db_mib']:.0f} → {rows[-1]['db_mib']:.0f} MiB) | {j['rss_growth']:+.0%} "
            f"({rows[len(rows) // 2]['rss_mib']:.0f} → {rows[-1]['rss_mib']:.0f} MiB) | {p99:.1f} ms |"
        )
    lines += ["", "Each minute (logins/s · verify p99 ms · RSS MiB · DB MiB · rows of logins/events/outbox):", ""]
    for db, rows in runs.items():
        cells = " ".join(
            f"{int(r['minute'])}: {r['logins_per_s']:.0f}·{r['verify_p99_ms']:.1f}·{r['rss_mib']:.0f}·{r['db_mib']:.0f}·"
            f"{int(r['logins'])}/{int(r['events'])}/{int(r['outbox'])};"
            for r in rows
        )
        lines += [f"- {db}: {cells}", ""]
    with open(os.path.join(out, f"soak-{flow}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def into_benchmarks(benchmarks, out):
    parts = sorted(p for p in os.listdir(out) if p.startswith("soak-") and p.endswith(".md"))
    body = "\n".join(open(os.path.join(out, p)).read() for p in parts)
    sections.publish(benchmarks, "soak", body)


if __name__ == "__main__":
    if sys.argv[1] == "--benchmarks":
        into_benchmarks(sys.argv[2], sys.argv[3])
    else:
        out, flow, retain, users, *dbs = sys.argv[1:]
        section(out, flow, retain, users, dbs)
