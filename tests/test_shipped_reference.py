"""`mathtune reference`: every reference row beside the shipped configuration that answers it, or "not run"."""

from __future__ import annotations

import json

from mathtune.analysis.reference import load_reference
from mathtune.analysis.shipped import CONFIGS_DIR, NOT_RUN, load_shipped, shipped_versus_reference
from mathtune.search.cli import main


def test_every_reference_row_has_a_figure_or_says_not_run():
    """One row per reference figure; an answered row names its file and its validation selection."""
    table = shipped_versus_reference()
    frame = table.frame
    assert len(frame) == sum(len(r["figures"]) for r in load_reference())
    names = {p.name for p in CONFIGS_DIR.glob("*.json")}
    for _, row in frame.iterrows():
        if row["ours"] == NOT_RUN:
            assert row["configuration"] == "-"
        else:
            assert row["configuration"] in names and row["selected"].startswith("on validation")
    assert all(cell.strip() for row in table.cells() for cell in row[:10])  # no blank cell but the notes
    t2t = frame[(frame["family"] == "arith-text2text") & (frame["reference setting"] == "LSTM(256) enc/dec, 50/50")]
    assert (t2t["configuration"] != "-").all()  # the shipped +- configuration answers the 50/50 row


def _write(folder, name, family, figure, config):
    (folder / f"{name}.json").write_text(json.dumps({"family": family, "figure": figure, "config": config}))


def test_seed_spread_and_auxiliary_supervision_are_shown(tmp_path):
    """A mean over seeds shows its spread; a model with a head the reference lacked names it and shows the
    best end-to-end figure without it; the best match is chosen on validation, not test."""
    base = {"ops": "+-", "split": 0.65, "extra_layers": 1}
    _write(tmp_path, "with-head", "arith-img2text",
           {"val_exact_match": 0.99, "test_exact_match": 0.95, "test_char_acc": 0.98,
            "seeds": {"test_char_acc": [0.97, 0.98, 0.99]}}, {**base, "aux_weight": 1.0})
    _write(tmp_path, "plain", "arith-img2text",
           {"val_exact_match": 0.93, "test_exact_match": 0.90, "test_char_acc": 0.955}, {**base, "aux_weight": 0.0})
    _write(tmp_path, "test-lucky", "arith-img2text",
           {"val_exact_match": 0.50, "test_exact_match": 0.99, "test_char_acc": 0.999}, {**base, "aux_weight": 0.0})
    table = shipped_versus_reference(load_shipped(tmp_path), families={"arith-img2text"})
    row = table.frame[(table.frame["reference setting"] == "+/-, 65/35, one extra encoder layer")].iloc[0]
    assert row["configuration"] == "with-head.json" and abs(row["ours"] - 0.98) < 1e-12
    assert row["seeds"] == "± 1.00 over 3 seeds"
    assert "per-image reading head" in row["notes"]
    assert "without it: 95.50%, test exact match 90.00% (plain.json)" in row["notes"]
    mul = table.frame[table.frame["reference setting"].str.startswith("*, 75/25")].iloc[0]
    assert mul["ours"] == NOT_RUN
    assert row["found by"] == "hand run (mathtune train)"


def test_each_row_says_whether_a_search_or_a_hand_run_found_its_figure(tmp_path):
    base = {"ops": "+-", "split": 0.65, "extra_layers": 1, "aux_weight": 0.0}
    (tmp_path / "searched.json").write_text(json.dumps({
        "family": "arith-img2text", "figure": {"val_exact_match": 0.95, "test_char_acc": 0.97}, "config": base,
        "search": {"experiment": "img2text-campaign", "budget_s": 28800,
                   "command": "mathtune search arith-img2text-addsub --budget 8h"}}))
    table = shipped_versus_reference(load_shipped(tmp_path), families={"arith-img2text"})
    row = table.frame[(table.frame["reference setting"] == "+/-, 65/35, one extra encoder layer")].iloc[0]
    assert row["found by"] == "search img2text-campaign (budget 8 h 00 min)"
    shipped = shipped_versus_reference()
    assert set(shipped.frame.loc[shipped.frame["configuration"] != "-", "found by"]) == {"hand run (mathtune train)"}


def test_reference_command_prints_and_refuses_unknown_families(tmp_path, capsys):
    code = main(["reference", "--family", "arith-text2text", "--out", str(tmp_path / "ref.md")])
    assert code == 0
    text = (tmp_path / "ref.md").read_text()
    assert text.startswith("## Shipped configurations versus the reference reports") and "arith-text2text" in text
    assert "t2m-lstm" not in text
    code = main(["reference", "--family", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope" in err
