"""Render the measured tables of README.md and docs/*.md from docs/results/*.json.

Every measured table sits between two markers::

    <!-- table: NAME -->
    ...generated: the table and a "Made by" line...
    <!-- /table -->

and is rendered from ``docs/results/NAME.json`` (``NAME + OTHER`` renders the rows of
both files under the first one's columns). A results file holds::

    {"title": str, "command": "docs/reproduce/NAME.sh", "runtime": "about N min on 2 CPU cores",
     "columns": [str, ...], "rows": [[cell, ...], ...], "notes": str}

with cells exactly as they print (strings or numbers) and an optional ``"align"``
(``"l"``/``"r"`` per column). A table that is not generated is declared static by a
``<!-- static table -->`` line right above it.

    python docs/tables.py            # rewrite every marked table
    python docs/tables.py --check    # exit 1 naming drifted tables and other problems
    python docs/tables.py --list     # every generated table, its script and run time
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("title", "command", "runtime", "columns", "rows", "notes")
PENDING = "pending rerun"
STATIC = "<!-- static table -->"
MARKED = re.compile(r"^<!-- table: (?P<names>[\w-]+(?: \+ [\w-]+)*) -->\n(?P<body>.*?)"
                    r"^<!-- /table -->$", re.S | re.M)
SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md page."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def load_results(name: str, root: Path = ROOT) -> dict:
    """``docs/results/NAME.json``, checked against the format above."""
    path = root / "docs" / "results" / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no results file {path.relative_to(root)}; write it with its "
                         f"docs/reproduce script")
    data = json.loads(path.read_text())
    missing = [key for key in KEYS if key not in data]
    if missing:
        raise ValueError(f"{path.relative_to(root)} lacks {', '.join(missing)}")
    width = len(data["columns"])
    for i, row in enumerate(data["rows"]):
        if len(row) != width:
            raise ValueError(f"{path.relative_to(root)}: row {i} has {len(row)} cells, "
                             f"the columns {width}")
    if "align" in data and (len(data["align"]) != width
                            or set(data["align"]) - {"l", "r"}):
        raise ValueError(f"{path.relative_to(root)}: align needs one 'l' or 'r' per column")
    return data


def line(cells: list) -> str:
    """One markdown table row; an empty cell is one space."""
    text = [str(c).replace("\n", " ") for c in cells]
    return "|" + "|".join(f" {c} " if c else " " for c in text) + "|"


def made_by(results: list[dict]) -> str:
    parts = []
    for data in results:
        extra = f"; {PENDING}" if PENDING in data["notes"] else ""
        parts.append(f"`{data['command']}` ({data['runtime']}{extra})")
    parts = list(dict.fromkeys(parts))
    listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    return f"Made by {listed}."


def render(names: str, root: Path = ROOT) -> str:
    """The generated text between the markers of ``names`` (``A`` or ``A + B``)."""
    results = [load_results(name, root) for name in names.split(" + ")]
    columns = results[0]["columns"]
    for name, data in zip(names.split(" + "), results, strict=True):
        if data["columns"] != columns:
            raise ValueError(f"docs/results/{name}.json: its columns differ from "
                             f"{names.split(' + ')[0]}'s; a joined table needs the same ones")
    align = results[0].get("align", ["l"] * len(columns))
    lines = [line(columns),
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    for data in results:
        lines += [line(row) for row in data["rows"]]
    return "\n".join(lines) + "\n\n" + made_by(results) + "\n"


def rewrite(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every marked table rendered, and the names of those that changed."""
    changed: list[str] = []

    def fill(match: re.Match) -> str:
        body = render(match["names"], root)
        if body != match["body"]:
            changed.append(match["names"])
        return f"<!-- table: {match['names']} -->\n{body}<!-- /table -->"

    return MARKED.sub(fill, text), changed


def unmarked_tables(text: str) -> list[int]:
    """Line numbers of tables neither generated nor declared static."""
    spans = [(text.count("\n", 0, m.start()), text.count("\n", 0, m.end()))
             for m in MARKED.finditer(text)]
    lines, found, fenced = text.split("\n"), [], False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        starts = (line.startswith("|") and i + 1 < len(lines)
                  and SEPARATOR.match(lines[i + 1]) and not lines[i - 1].startswith("|"))
        if fenced or not starts or any(a <= i <= b for a, b in spans):
            continue
        if lines[i - 1].strip() != STATIC:
            found.append(i + 1)
    return found


def command_problems(root: Path = ROOT) -> tuple[list[str], list[str]]:
    """Results files that are malformed or whose command is not in the repository:
    (errors, pending)."""
    errors, pending = [], []
    for path in sorted((root / "docs" / "results").glob("*.json")):
        try:
            data = load_results(path.stem, root)
        except ValueError as err:
            errors.append(str(err))
            continue
        script = shlex.split(data["command"])[0]
        if not (root / script).is_file():
            problem = f"docs/results/{path.name}: its command {script} is not in the repository"
            (pending if PENDING in data["notes"] else errors).append(problem)
    return errors, pending


def inventory(root: Path = ROOT) -> list[tuple[str, str, dict]]:
    """(page, table name, results file) for every results file of every marked table."""
    found = []
    for page in pages(root):
        for match in MARKED.finditer(page.read_text()):
            for name in match["names"].split(" + "):
                found.append((str(page.relative_to(root)), name, load_results(name, root)))
    return found


def check(root: Path = ROOT) -> list[str]:
    """Every problem, one line each: drifted or unmarked tables, missing commands."""
    problems = []
    for page in pages(root):
        text = page.read_text()
        rel = page.relative_to(root)
        try:
            _, changed = rewrite(text, root)
        except ValueError as err:
            problems.append(f"{rel}: {err}")
            continue
        problems += [f"{rel}: table {names} differs from docs/results (run python "
                     f"docs/tables.py)" for names in changed]
        problems += [f"{rel}:{line}: a table without <!-- table: NAME --> markers "
                     f"(or {STATIC} above it)" for line in unmarked_tables(text)]
    errors, _ = command_problems(root)
    return problems + errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 naming every table that drifted")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true",
                        help="print every generated table: page, name, script, run time")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.list:
        for page, names, data in inventory(root):
            state = PENDING if PENDING in data["notes"] else "current"
            print(f"{page}\t{names}\t{data['command']}\t{data['runtime']}\t{state}")
        return 0
    if args.check:
        problems = check(root)
        for line in command_problems(root)[1]:
            print(f"note: {line} ({PENDING})", file=sys.stderr)
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 1 if problems else 0
    for page in pages(root):
        text = page.read_text()
        try:
            new, changed = rewrite(text, root)
        except ValueError as err:
            print(f"error: {page.relative_to(root)}: {err}", file=sys.stderr)
            return 1
        if changed:
            tmp = page.with_suffix(page.suffix + ".tmp")
            tmp.write_text(new)
            tmp.replace(page)
            print(f"{page.relative_to(root)}: {', '.join(changed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
