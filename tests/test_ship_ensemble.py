"""`mathtune ship NAME RUN1 RUN2 --weights WNAME`: text-to-program runs ship as one ensemble model pretrained:WNAME,
whose members decode as one (as `mathtune evaluate --ensemble` does), measured from the shipped float16 files;
`mathtune evaluate pretrained:WNAME` loads it whole and gives back the recorded figures. Members of another program
vocabulary, a run given twice, an ensemble over the size limit: one line, nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from mathtune.search.cli import main
from mathtune.trainables.errors import CheckpointError
from mathtune.trainables.t2m import shipped
from mathtune.trainables.t2m.evaluation import find_checkpoint, find_members

from .t2m_fixtures import COL775, one_thread, real_data  # noqa: F401

LINE = re.compile(r"beam\s+(\d+): exact match\s+([\d.]+)%\s+execution accuracy\s+([\d.]+)%")
TINY = {"epochs": 4, "threads": 1, "device": "cpu", "emb": 16, "hidden": 32, "dec_emb": 16, "dec_hidden": 32,
        "beam_width": 1, "max_decode_len": 40, "batch_size": 8, "lr": 0.01}


def _train(root: Path, family: str, problems: int, name: str, **overrides) -> Path:
    """A tiny `mathtune train` run of ``family`` on the first ``problems`` COL775 training problems (validated on
    the same problems), TINY with ``overrides``."""
    data = root / f"train{problems}.json"
    if not data.is_file():
        data.write_text(json.dumps(json.loads((COL775 / "train.json").read_text())[:problems]))
    config = root / f"{name}.json"
    config.write_text(json.dumps({**TINY, **overrides, "train_file": str(data), "dev_file": str(data)}))
    before = torch.get_num_threads()
    try:
        assert main(["train", family, "--config", str(config), "--out", str(root / name), "-q"]) == 0
    finally:
        torch.set_num_threads(before)
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs of two families on the same 40 training problems (one program vocabulary)."""
    root = tmp_path_factory.mktemp("ens")
    return root, [_train(root, "t2m-attn", 40, "attn"), _train(root, "t2m-lstm", 40, "lstm")]


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """A temporary folder of shipped models in place of the package's (nothing ships into the repository)."""
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    return tmp_path / "weights"


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error(capsys, *argv) -> str:
    """The one line `mathtune ARGV...` prints on stderr when it refuses the input (exit 2, no traceback)."""
    code, _, err = _run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("mathtune: error: ") and "Traceback" not in err
    return err


def _predictions(capsys, tmp: Path, tag: str, *argv) -> tuple[str, dict[int, list[str]]]:
    """What `mathtune evaluate ARGV... --beam-width 1 2 --out` prints and predicts per width."""
    code, out, err = _run(capsys, "evaluate", *argv, "--beam-width", 1, 2, "--threads", 1,
                          "--out", tmp / f"{tag}.json")
    assert code == 0, err
    return out, {w: [it["predicted"] for it in json.loads((tmp / f"{tag}.beam{w}.json").read_text())]
                 for w in (1, 2)}


def test_runs_ship_as_one_ensemble_that_evaluate_loads_whole(runs, weights, tmp_path, capsys):
    """The ensemble's members sit under members/N in float16 with their provenance; `mathtune evaluate
    pretrained:ens` decodes with all of them, gives back the figures recorded at ship time, and predicts what
    the runs themselves predict decoding as one (`evaluate RUN1 --ensemble RUN2`)."""
    root, (attn, lstm) = runs
    dev = root / "train40.json"
    before = torch.get_num_threads()
    code, out, err = _run(capsys, "ship", "tiny-ens", attn, lstm, "--weights", "ens", "--widths", 1, 2,
                          "--threads", 1, "--produced-by", "mathtune train t2m-attn ...; mathtune train t2m-lstm ...",
                          "--configs-dir", tmp_path / "configs")
    assert code == 0, err
    assert torch.get_num_threads() == before
    assert "pretrained:ens written" in out and "an ensemble of 2 models" in out
    assert not (tmp_path / "configs").exists()  # an ensemble is no `mathtune train` configuration

    # the layout: a model.json listing the members, each a shipped model folder of its own
    folder = weights / "ens"
    assert shipped.shipped_names() == ["ens"] and shipped.resolve_pretrained("pretrained:ens") == folder
    assert sorted(p.name for p in folder.iterdir()) == ["members", "model.json"]
    assert shipped.is_ensemble(folder) and shipped.member_folders(folder) == [folder / "members" / "0",
                                                                              folder / "members" / "1"]
    record = shipped.read_model_record(folder)
    assert record["family"] == "t2m-attn + t2m-lstm" and record["dtype"] == "float16"
    assert record["size_bytes"] <= shipped.MAX_ENSEMBLE_BYTES
    assert record["measured_on"] == {"file": dev.name, "md5": shipped.file_md5(dev), "threads": 1}
    for i, (member, run) in enumerate(zip(record["members"], (attn, lstm))):
        sub = folder / member["path"]
        assert member["path"] == f"members/{i}" and member["family"] == ("t2m-attn", "t2m-lstm")[i]
        assert member["source_checkpoint"] == str(run / "best") and member["run"] == str(run)
        best = json.loads((run / "result.json").read_text())["best"]
        assert member["epoch"] == member["run_figure"]["epoch"] == best["epoch"]
        assert member["run_figure"]["val_exec_acc"] == best["val_exec_acc"]
        assert member["provenance"][0]["threads"] == 1 and member["dtype"] == "float16"
        assert member["train_command"] == (f"mathtune train {member['family']} --config "
                                           f"trainables/weights/ens/members/{i}/config.json")
        assert sorted(p.name for p in sub.iterdir()) == ["config.json", "model.json", "state.pt"]
        assert {"threads", "device"}.isdisjoint(json.loads((sub / "config.json").read_text()))
        state = torch.load(sub / "state.pt", map_location="cpu", weights_only=True)["model"]
        assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
        assert shipped.read_model_record(sub)["source_checkpoint"] == member["source_checkpoint"]

    # `mathtune evaluate pretrained:ens` gives back the recorded figures, decoding with both members
    out, shipped_preds = _predictions(capsys, tmp_path, "shipped", "pretrained:ens", dev)
    assert "pretrained:ens: an ensemble of 2 models, t2m-attn + t2m-lstm" in out
    assert "an ensemble of 2 models" in out.split("decoding", 1)[1]
    printed = {int(w): (float(em), float(ex)) for w, em, ex in LINE.findall(out)}
    for width in (1, 2):
        for key in ("dev", "dev_first_200"):
            want = record["figures"][key][str(width)]
            assert want["problems"] == 40
            assert printed[width] == (pytest.approx(want["exact_match"], abs=0.005),
                                      pytest.approx(want["exec_acc"], abs=0.005))
    assert record["figures"]["dev"]["1"]["exec_acc"] > 0  # the figures are not trivially equal

    # the same decode as the member folders given as checkpoints, and as the runs they came from
    _, members_preds = _predictions(capsys, tmp_path, "members", folder / "members" / "0", dev,
                                    "--ensemble", folder / "members" / "1")
    assert members_preds == shipped_preds
    _, run_preds = _predictions(capsys, tmp_path, "runs", attn, dev, "--ensemble", lstm)
    assert run_preds == shipped_preds

    # --ensemble on top of a shipped ensemble adds members, either way round
    out, _ = _predictions(capsys, tmp_path, "three", "pretrained:ens", dev, "--ensemble", attn)
    assert "an ensemble of 3 models" in out
    out, three = _predictions(capsys, tmp_path, "three-b", attn, dev, "--ensemble", "pretrained:ens")
    assert "an ensemble of 3 models" in out and len(three[2]) == 40
    assert find_members("pretrained:ens") == shipped.member_folders(folder)
    with pytest.raises(CheckpointError, match="a shipped ensemble of 2 models, not one checkpoint"):
        find_checkpoint("pretrained:ens")


def test_ensemble_members_share_their_program_vocabulary(runs, weights, tmp_path, capsys):
    """A run trained on other problems (another program vocabulary), the same run twice, several runs without
    --weights: one line naming the run, nothing written."""
    root, (attn, lstm) = runs
    other = _train(root, "t2m-lstm", 6, "other")
    ship = ["ship", "x", "--produced-by", "x", "--configs-dir", tmp_path / "configs", "--threads", 1]
    err = _error(capsys, *ship, attn, lstm, other, "--weights", "bad")
    assert f"{other}: t2m-lstm trained on another program vocabulary than {attn}" in err
    assert "the same checkpoint as" in _error(capsys, *ship, attn, attn, "--weights", "bad")
    assert "--weights WNAME names it" in _error(capsys, *ship, attn, lstm)
    assert "no such run folder" in _error(capsys, *ship, attn, tmp_path / "nope", "--weights", "bad")
    assert not weights.exists() and not (tmp_path / "configs").exists()


def test_an_ensemble_over_the_size_limit_is_refused(runs, weights, tmp_path, capsys, monkeypatch):
    """The members' float16 files over the limit: one line with their size, no folder left behind."""
    _, (attn, lstm) = runs
    monkeypatch.setattr(shipped, "MAX_ENSEMBLE_BYTES", 1000)
    err = _error(capsys, "ship", "x", attn, lstm, "--weights", "big", "--produced-by", "x", "--threads", 1)
    assert re.search(r"pretrained:big: 2 members take [\d.]+ MB in float16, over the 0.001 MB", err), err
    assert not weights.exists() or not list(weights.iterdir())


def _figure(capsys, *argv) -> tuple[float, float]:
    """(execution, exact match) that `mathtune evaluate ARGV... --beam-width 1` prints."""
    code, out, err = _run(capsys, "evaluate", *argv, "--beam-width", 1, "--threads", 1)
    assert code == 0, err
    (_, em, ex), = LINE.findall(out)
    return float(ex), float(em)


def test_select_chooses_members_on_dev_by_greedy_forward_selection(runs, weights, tmp_path, capsys):
    """--select K among many runs: a folder without a checkpoint, a repeated run and a run of another vocabulary
    are left out with a line; the best alone on dev is the first member, each added member raises the
    ensemble's dev execution accuracy (checked against `mathtune evaluate --ensemble`), no left-out run raises
    the final one, and the shipped model records how its members were chosen."""
    root, _ = runs
    dev = root / "train24.json"
    learns = {"epochs": 14, "emb": 32, "dec_emb": 100, "hidden": 64, "dec_hidden": 64, "dropout": 0.0,
              "teacher_forcing": 1.0, "lr": 0.02, "batch_size": 4}  # part-way to memorising its 24 problems
    attn, lstm, seed2 = (_train(root, family, 24, f"{family}-sel-{seed}", seed=seed, **learns)
                         for family, seed in (("t2m-attn", 0), ("t2m-lstm", 0), ("t2m-attn", 2)))
    weak = _train(root, "t2m-lstm", 24, "weak", **{**learns, "epochs": 2, "seed": 1})
    other = _train(root, "t2m-lstm", 6, "other-vocab")
    failed = tmp_path / "trial_failed"
    failed.mkdir()
    candidates = [attn, failed, lstm, weak, other, seed2, attn]
    code, out, err = _run(capsys, "ship", "sel", *candidates, "--weights", "sel", "--select", 3, "--widths", 1,
                          "--threads", 1, "--produced-by", "mathtune train ...", "--configs-dir",
                          tmp_path / "configs")
    assert code == 0, err
    assert f"select: left out {failed}: not a finished `mathtune train` run" in out
    assert f"select: left out {attn}: the same checkpoint as {attn}" in out
    assert f"select: left out {other}: trained on another program vocabulary than {attn}" in out

    pool = [attn, lstm, weak, seed2]
    alone = {run: _figure(capsys, run, dev) for run in pool}
    record = shipped.read_model_record(weights / "sel")
    selected = record["selected"]
    assert selected.startswith("greedy forward selection with replacement on dev (beam 1) among the 4 of 4 runs")
    # the votes in the order they were cast: "RUN alone X%; + RUN2 Y%; + RUN again Z%"
    steps = selected.split("at most 3 members: ", 1)[1].split(" (stopped: ", 1)[0].split("; ")
    cast = [re.fullmatch(r"(?:\+ )?(\S+?)(?: alone| again)? ([\d.]+)%", step).groups() for step in steps]
    order = [Path(run) for run, _ in cast]
    # these seeds train members that differ enough for a second one to help (training is deterministic on CPU)
    assert len(order) >= 2 and set(order) <= set(pool)
    assert alone[order[0]] == max(alone.values())  # the best alone comes first
    if shipped.is_ensemble(weights / "sel"):
        members = {Path(m["run"]): m["votes"] for m in record["members"]}
    else:  # one run with several votes is that run alone
        members = {Path(record["source_checkpoint"]).parent: len(order)}
    assert members == {run: order.count(run) for run in dict.fromkeys(order)} and len(members) <= 3
    figures = [alone[order[0]]]
    for k in range(2, len(order) + 1):  # each vote raised the ensemble's figure: a member with two votes is
        figures.append(_figure(capsys, order[0], dev, *sum((["--ensemble", r] for r in order[1:k]), [])))  # listed twice
        assert figures[-1][0] > figures[-2][0] and f"{figures[-1][0]:.2f}" == cast[k - 1][1]
    if "no vote raised" in selected:  # and then no further vote does
        for run in pool if len(members) < 3 else members:
            assert _figure(capsys, order[0], dev, *sum((["--ensemble", r] for r in order[1:] + [run]), []))[0] \
                <= figures[-1][0]
    for line, (ex, em) in zip([ln for ln in out.splitlines() if "select: round" in ln], figures[1:]):
        assert f"execution {ex:.2f}%, exact match {em:.2f}%" in line


def test_votes_count_a_member_as_many_times(runs, weights, tmp_path, capsys):
    """A member with two votes decodes as that member listed twice: the shipped ensemble with votes 2, 1 predicts
    what `mathtune evaluate A --ensemble A --ensemble B` does, and says so."""
    from mathtune.trainables.t2m.ship import ship_ensemble

    root, (attn, lstm) = runs
    dev = root / "train40.json"
    ship_ensemble([attn, lstm], weights="voted", produced_by="x", widths=[1, 2], threads=1, votes=[2, 1])
    record = shipped.read_model_record(weights / "voted")
    assert [m["votes"] for m in record["members"]] == [2, 1]
    out, voted = _predictions(capsys, tmp_path, "voted", "pretrained:voted", dev)
    assert "an ensemble of 2 models with votes 2, 1" in out
    _, listed = _predictions(capsys, tmp_path, "listed", attn, dev, "--ensemble", attn, "--ensemble", lstm)
    assert voted == listed
    printed = {int(w): float(ex) for w, _, ex in LINE.findall(out)}
    assert printed[1] == pytest.approx(record["figures"]["dev"]["1"]["exec_acc"], abs=0.005)
    with pytest.raises(Exception, match="votes \\[0, 1\\]: one whole number of at least 1"):
        ship_ensemble([attn, lstm], weights="bad", produced_by="x", widths=[1], threads=1, votes=[0, 1])


def test_select_needs_weights_and_sane_numbers(runs, weights, tmp_path, capsys):
    root, (attn, lstm) = runs
    ship = ["ship", "x", attn, lstm, "--produced-by", "x", "--threads", 1, "--configs-dir", tmp_path / "configs"]
    assert "--select chooses the members of one shipped model: --weights WNAME names it" in _error(
        capsys, *ship, "--select", 2)
    assert "--select 0: choose at least 1 member" in _error(capsys, *ship, "--weights", "w", "--select", 0)
    assert "--select-width 0: beam widths start at 1" in _error(capsys, *ship, "--weights", "w", "--select", 2,
                                                                "--select-width", 0)
    assert "--select: none of the 1 runs is a" in _error(capsys, "ship", "x", tmp_path, "--weights", "w",
                                                        "--select", 2, "--produced-by", "x")
    assert not weights.exists() and not (tmp_path / "configs").exists()
