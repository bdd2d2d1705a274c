"""The text-to-program model shipped in the package (`pretrained:t2m`): it loads offline, is small, and the
documented command reproduces the dev figures recorded with the shipped file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mathtune.search.cli import main
from mathtune.trainables.t2m.scoring import score_items
from mathtune.trainables.t2m.shipped import (MAX_ENSEMBLE_BYTES, MODEL_FILE, file_md5, folder_bytes, is_ensemble,
                                             member_folders, read_model_record, resolve_pretrained, shipped_names)

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mathqa" / "col775" / "dev.json"
FIRST = 200


def test_the_best_model_ships_small_in_float16():
    """pretrained:t2m is in the package: float16 weights with their vocabularies and config beside, at most 20 MB
    for one model, 40 MB in all for an ensemble (each member such a folder, under members/)."""
    assert "t2m" in shipped_names()
    folder = resolve_pretrained("pretrained:t2m")
    limit = MAX_ENSEMBLE_BYTES if is_ensemble(folder) else 20_000_000
    assert folder_bytes(folder) <= limit
    for member in member_folders(folder):
        assert {"state.pt", "config.json", MODEL_FILE} <= {p.name for p in member.iterdir()}
        state = torch.load(member / "state.pt", map_location="cpu", weights_only=True)["model"]
        floats = [v for v in state.values() if v.is_floating_point()]
        assert floats and all(v.dtype == torch.float16 for v in floats) and state["meta_json"].dtype == torch.uint8
        assert read_model_record(member)["train_command"].startswith("mathtune train t2m-")
    assert read_model_record(folder)["figures"]["dev"]


def test_documented_command_reproduces_the_recorded_dev_figure(tmp_path, capsys):
    """`mathtune evaluate pretrained:t2m FILE --beam-width 1 10 --out P.json` on the first 200 dev problems
    scores within a point of the figures recorded with the shipped file (measured on the same dev file)."""
    if not DEV.is_file():
        pytest.skip(f"real COL775 dev file not found at {DEV}")
    record = read_model_record(resolve_pretrained("pretrained:t2m"))
    assert record["measured_on"]["md5"] == file_md5(DEV), "the recorded figures were measured on another dev file"
    small = tmp_path / "dev200.json"
    small.write_text(json.dumps(json.loads(DEV.read_text())[:FIRST]))
    code = main(["evaluate", "pretrained:t2m", str(small), "--beam-width", "1", "10", "--threads", "2",
                 "--out", str(tmp_path / "pred.json")])
    out = capsys.readouterr().out
    assert code == 0 and "pretrained:t2m: t2m-" in out
    for width in (1, 10):
        items = json.loads((tmp_path / f"pred.beam{width}.json").read_text())
        assert len(items) == FIRST and all(i["predicted"] for i in items)
        want = record["figures"][f"dev_first_{FIRST}"][str(width)]
        got = score_items(items)
        assert got.execution_accuracy == pytest.approx(want["exec_acc"], abs=1.0)
        assert got.exact_match == pytest.approx(want["exact_match"], abs=1.0)
