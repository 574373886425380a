"""The sections of BENCHMARKS.md that the long benches write (soak, large
tables, several instances): each is kept in bench/<NAME>.md too, which
bench/report.py includes, so a full run of the main bench does not drop
them; in BENCHMARKS.md each lives between `<!-- name:begin -->` and
`<!-- name:end -->` and a new run replaces it."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
SECTIONS = (
    ("soak", "Soak (issue 20)"),
    ("large", "Large tables (issue 20)"),
    ("scale", "Several instances (issue 20)"),
    ("session", "Session credentials and stamps (issue 16)"),
)


def publish(benchmarks, name, body):
    title = dict(SECTIONS)[name]
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    with open(os.path.join(HERE, f"{name.upper()}.md"), "w") as f:
        f.write(f"## {title}\n\n{block}\n")
    with open(benchmarks) as f:
        text = f.read()
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    with open(benchmarks, "w") as f:
        f.write(text)


def included():
    """The kept sections, in order, for bench/report.py."""
    for name, _ in SECTIONS:
        path = os.path.join(HERE, f"{name.upper()}.md")
        if os.path.exists(path):
            yield open(path).read().rstrip()
