"""docs/results.md cannot drift: its tables say what the shipped configurations say, and its links resolve.

The reference table is compared cell by cell with ``shipped_versus_reference()`` (what ``mathtune reference``
prints), the text-to-program table with each shipped t2m file's figures by beam width, and the configurations
table with every file in ``trainables/configs``. When a shipped file changes, a test here fails and names the
cell of docs/results.md to update.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mathtune.analysis.shipped import CONFIGS_DIR, load_shipped, shipped_versus_reference

DOCS = Path(__file__).resolve().parents[1] / "docs"
RESULTS = DOCS / "results.md"
BENCHMARKS = DOCS / "benchmarks.md"

REFERENCE_HEADER = ["reference setting", "metric", "reference", "ours", "difference", "ours, test exact match",
                    "selected", "seeds", "found by", "configuration", "without the head", "notebook"]
T2M_HEADER = ["family", "configuration", "dev execution, beam 1 / 5 / 10", "dev exact match, beam 1 / 5 / 10",
              "best width on dev: execution (exact match)", "COL775 test split"]
CONFIGS_HEADER = ["configuration", "family", "date", "wall", "CPU recorded", "produced by", "notebook"]
LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _sections(text: str) -> dict[str, list[str]]:
    """``## Title`` -> the lines under it, fenced code left out."""
    out: dict[str, list[str]] = {}
    current, fenced = None, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def _tables(lines: list[str]) -> list[tuple[str | None, list[str], list[list[str]]]]:
    """(the ``###`` heading above it, header, rows) for every Markdown table in ``lines``."""
    tables, heading, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("### "):
            heading = line[4:].strip()
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header, rows, i = _cells(line), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append((heading, header, rows))
            continue
        i += 1
    return tables


def _slugs(text: str) -> set[str]:
    """The anchors a Markdown renderer gives the headings (GitHub's rule: lower case, punctuation dropped,
    spaces to hyphens, ``-1``, ``-2`` ... for repeats), plus explicit ``<a id="...">`` anchors."""
    seen: dict[str, int] = {}
    out, fenced = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if fenced or not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out | set(re.findall(r'<a id="([^"]+)"></a>', text))


@pytest.fixture(scope="module")
def doc() -> str:
    return RESULTS.read_text()


def _link(cell: str) -> tuple[str, str]:
    m = LINK.fullmatch(cell)
    assert m, f"not a single Markdown link: {cell!r}"
    return m.group(1), m.group(2)


def test_reference_table_is_what_mathtune_reference_prints(doc):
    """Every row of `mathtune reference`, in its order, with the same figures, file and selection."""
    table = shipped_versus_reference()
    cols = list(table.frame.columns)
    expected = [dict(zip(cols, cells)) for cells in table.cells()]
    tables = _tables(_sections(doc)["Against the reference reports"])
    assert tables and all(header == REFERENCE_HEADER for _, header, _ in tables)
    got = [(family, row) for family, _, rows in tables for row in rows]
    assert len(got) == len(expected), f"docs/results.md has {len(got)} reference rows, mathtune reference {len(expected)}"
    for n, ((family, row), want) in enumerate(zip(got, expected), start=1):
        cell = dict(zip(REFERENCE_HEADER, row))
        where = f"reference row {n} ({want['family']}: {want['reference setting']}, {want['metric']})"
        assert family == want["family"], f"{where}: under heading {family!r}"
        for key in ("reference setting", "metric", "reference", "ours", "difference", "ours, test exact match",
                    "selected", "seeds", "found by"):
            assert cell[key] == want[key], f"{where}, column {key!r}: docs/results.md says {cell[key]!r}, " \
                                           f"the shipped files say {want[key]!r}"
        if want["configuration"] == "-":
            assert cell["configuration"] == "-", where
        else:
            name, target = _link(cell["configuration"])
            assert (name, target) == (want["configuration"], "#cfg-" + Path(want["configuration"]).stem), where
        m = re.search(r"without it: ([0-9.]+%), test exact match [0-9.]+% \(([^)]+)\)", want["notes"])
        assert cell["without the head"] == (f"{m.group(1)} ({m.group(2)})" if m else "-"), where
        assert _link(cell["notebook"])[1].startswith("benchmarks.md#"), where


def test_text_to_program_table_matches_the_shipped_files(doc):
    """Dev execution accuracy and exact match at every beam width, and the best width, as each t2m file records."""
    (_, header, rows), = _tables(_sections(doc)["Text to programs (MathQA, COL775)"])
    assert header == T2M_HEADER
    shipped = {c.path.name: c for c in load_shipped() if c.family.startswith("t2m-")}
    assert sorted(r[0] for r in rows) == sorted(c.family for c in shipped.values()), "one row per shipped t2m file"
    for row in rows:
        cell = dict(zip(T2M_HEADER, row))
        name, _ = _link(cell["configuration"])
        cfg = shipped[name]
        assert cfg.family == cell["family"]
        by = cfg.figure["dev_percent_by_beam_width"]
        widths = sorted(by, key=int)
        assert cell["dev execution, beam 1 / 5 / 10"] == " / ".join(f"{by[w]['exec_acc']:.2f}%" for w in widths), name
        assert cell["dev exact match, beam 1 / 5 / 10"] == " / ".join(f"{by[w]['exact_match']:.2f}%" for w in widths), name
        best = max(widths, key=lambda w: (by[w]["exec_acc"], -int(w)))
        assert cell["best width on dev: execution (exact match)"] == \
            f"beam {best}: **{by[best]['exec_acc']:.2f}%** ({by[best]['exact_match']:.2f}%)", name
        assert abs(by["1"]["exec_acc"] - 100 * cfg.value("val_exec_acc")) < 0.005, f"{name}: greedy dev = its val figure"
        test = cfg.value("test_exec_acc")
        if test == test:  # measured: the page must show it
            assert f"{100 * test:.2f}%" in cell["COL775 test split"], name
        else:
            assert cell["COL775 test split"] == "not measured", name


def test_every_shipped_configuration_is_listed_with_its_command_date_and_machine(doc):
    """One row per file in trainables/configs: its family, date, wall time, recorded CPU and producing command."""
    (_, header, rows), = _tables(_sections(doc)["Where each figure comes from"])
    assert header == CONFIGS_HEADER
    listed = {}
    for row in rows:
        cell = dict(zip(CONFIGS_HEADER, row))
        m = re.fullmatch(r'<a id="cfg-([^"]+)"></a>\[([^\]]+)\]\(\.\./trainables/configs/([^)]+)\)', cell["configuration"])
        assert m and m.group(1) + ".json" == m.group(2) == m.group(3), cell["configuration"]
        listed[m.group(2)] = cell
    files = {p.name: json.loads(p.read_text()) for p in CONFIGS_DIR.glob("*.json")}
    assert sorted(listed) == sorted(files), "every shipped file listed once, and no other"
    for name, payload in files.items():
        cell = listed[name]
        assert cell["family"] == payload["family"], name
        assert cell["date"] == payload.get("date", "-"), name
        wall = payload.get("wall_time_s")
        assert cell["wall"] == (f"{wall:,.0f} s" if isinstance(wall, (int, float)) else "-"), name
        assert cell["CPU recorded"] == payload.get("machine", "-").split(" with ")[0].split(", torch")[0], name
        assert cell["produced by"] == f"`{payload.get('produced_by', '-').split(' (')[0]}`", name
        assert _link(cell["notebook"])[1].startswith("benchmarks.md#"), name


def test_text2img_note_quotes_the_shipped_figures(doc):
    """The text2img note's pixel figure, its gap to the reference's 50/50 figure and the readable answers are
    the shipped files' (the reference's 85.18% at 50/50 and 86.25% at 80/20 stay as written)."""
    note = re.sub(r"\s+", " ", " ".join(_sections(doc)["Against the reference reports"]))
    note = note[note.index("**text2img.**"):note.index("**Text to programs.**")]
    shipped = {c.path.name: c for c in load_shipped()}
    head, plain = shipped["arith-text2img-addsub.json"], shipped["arith-text2img-addsub-e2e.json"]
    pixel = 100 * head.value("test_pixel_acc_exact")
    assert f"85.18% is its 50/50 row, where ours is {pixel:.2f}%, {85.18 - pixel:.2f} points below it" in note
    assert f"**{100 * head.value('test_exact_match'):.2f}% of test answers read correctly**" in note
    assert f"(itself {100 * head.value('classifier_acc'):.2f}% accurate)" in note
    assert f"{100 * plain.value('test_exact_match'):.2f}% without the answer-character head" in note
    assert "86.25% is its 80/20 row with two extra LSTM layers" in note


def test_every_link_resolves(doc):
    """Files exist; anchors exist in docs/benchmarks.md or on the page itself."""
    own, notebook = _slugs(doc), _slugs(BENCHMARKS.read_text())
    links = [target for _, target in LINK.findall(doc)]
    assert links
    for target in links:
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (DOCS / path).exists(), f"docs/results.md links to a missing file: {target}"
        if anchor:
            anchors = notebook if path == "benchmarks.md" else own if not path else None
            assert anchors is not None and anchor in anchors, f"docs/results.md links to a missing anchor: {target}"


def test_slugs_follow_the_renderers_rule():
    """Backticks, slashes, commas and apostrophes drop out; a repeated heading gets -1."""
    text = "# `*` at 60/40: a run, on averaged weights\n## The reference's table\n### The table\n### The table\n"
    assert {"-at-6040-a-run-on-averaged-weights", "the-references-table", "the-table", "the-table-1"} <= _slugs(text)
