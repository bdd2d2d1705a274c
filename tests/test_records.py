"""The record files (an experiment's mathtune.json, a run's result.json, a shipped configuration) are written and
read only through their typed records: they round-trip, keep what today's files hold byte for byte, refuse a
file from a newer mathtune or a corrupt one in one line that names the file, and every shipped file reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mathtune.analysis.ship import read_run
from mathtune.analysis.shipped import load_shipped
from mathtune.analysis.store import (RECORD_VERSION, ExperimentError, ExperimentRecord, load_experiment_meta,
                                     open_study_storage, read_experiment)
from mathtune.search.cli import main
from mathtune.search.dashboard import experiment_storage
from mathtune.search.engine import SearchError
from mathtune.trainables.errors import ShipError
from mathtune.trainables.records import (CONFIGS_DIR, RUN_VERSION, SHIPPED_VERSION, RecordError, RunRecord,
                                         ShippedRecord)

SHIPPED = sorted(CONFIGS_DIR.glob("*.json"))
SPACE = """family: arith-text2text
metric: val_exact_match
epochs: 1
factors: {split: [0.5]}
params:
  hidden: {type: choice, values: [8]}
"""


def _today(folder: Path) -> str:
    """mathtune.json as the engine wrote it before the record was its only writer (every key, in this order)."""
    return json.dumps({
        "family": "arith-text2text", "metric": "val_exact_match", "mode": "max", "name": folder.name,
        "space": "bench/replay-grid-mul.yaml", "space_name": "replay-grid-mul", "storage_path": str(folder.parent),
        "study_name": folder.name, "resources": {"cpu": 1.0, "gpu": 0.0},
        "options": {"num_samples": 64, "max_concurrent": 2, "cpus_per_trial": None, "scheduler": "none",
                    "seed": 0, "optuna_storage": None, "max_failures": 2, "sampler": "grid", "overrides": {},
                    "verbose": 0, "confirm_top": 0, "confirm_seeds": 3, "startup_trials": None},
        "optuna_storage": f"journal:{folder / 'optuna.journal'}", "factors": ["split"], "objectives": [],
        "created": "2026-12-07 00:11:22", "version": 2}, indent=1)


@pytest.fixture
def experiment(tmp_path) -> Path:
    """An experiment folder as a search leaves it before any trial reported: mathtune.json and space.yaml."""
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "mathtune.json").write_text(_today(folder))
    (folder / "space.yaml").write_text(SPACE)
    return folder


def _rewrite(path: Path, **changes) -> None:
    payload = json.loads(path.read_text())
    payload.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del payload[key]
    path.write_text(json.dumps(payload))


def _one_line_error(capsys, *argv) -> str:
    """`mathtune ARGV...` refuses: exit 2, one line on stderr, no traceback; returns the line."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("mathtune: error: ") and "Traceback" not in err, err
    return err.strip()


# ---------------------------------------------------------------------------------------------- mathtune.json
def test_experiment_record_reads_typed_and_writes_todays_bytes(experiment, tmp_path):
    record = read_experiment(experiment)
    assert isinstance(record, ExperimentRecord) and record.version == RECORD_VERSION == 2
    assert (record.family, record.metric, record.factors) == ("arith-text2text", "val_exact_match", ["split"])
    assert record.options["sampler"] == "grid" and record.resources == {"cpu": 1.0, "gpu": 0.0}
    assert record.location == str(experiment) and record.extra == {}
    assert record.to_json() == (experiment / "mathtune.json").read_text()  # the file as written today
    copy = tmp_path / "copy"
    assert record.write(copy).read_bytes() == (experiment / "mathtune.json").read_bytes()
    assert read_experiment(copy) == record
    assert load_experiment_meta(experiment) == json.loads(_today(experiment))  # the file's plain dict


def test_an_older_experiment_file_reads_with_defaults_and_unknown_keys_are_kept(experiment, tmp_path):
    _rewrite(experiment / "mathtune.json", version=None, objectives=None, dir="/elsewhere")  # as version 1 wrote it
    record = read_experiment(experiment)
    assert record.version == 1 and record.objectives == [] and record.extra == {"dir": "/elsewhere"}
    written = json.loads(record.write(tmp_path / "again").read_text())
    assert written["version"] == RECORD_VERSION and written["objectives"] == [] and written["dir"] == "/elsewhere"


def test_a_newer_experiment_file_is_refused_in_one_line_by_every_reader(experiment, capsys):
    _rewrite(experiment / "mathtune.json", version=RECORD_VERSION + 1, objectives=[["val_exact_match", "max"]])
    path = experiment / "mathtune.json"
    newer = f"{path}: written by a newer mathtune (version {RECORD_VERSION + 1}); this one reads up to {RECORD_VERSION}"
    with pytest.raises(ExperimentError) as exc:
        read_experiment(experiment)
    assert str(exc.value) == newer
    for command in ("report", "resume", "dashboard", "best"):
        assert _one_line_error(capsys, command, experiment) == f"mathtune: error: {newer}", command
    with pytest.raises(SearchError, match="written by a newer mathtune"):
        experiment_storage(experiment)
    with pytest.raises(ExperimentError, match="written by a newer mathtune"):
        open_study_storage(experiment)


@pytest.mark.parametrize("text, detail", [
    ("{oops", "unreadable experiment file (Expecting property name"),
    ('{"family": "arith-text2text", "metric": 3}', "unreadable experiment file ('metric' is not a str)"),
    ('{"family": "arith-text2text", "metric": "val_exact_match", "version": "2"}',
     "unreadable experiment file ('version' is '2', not a whole number from 1)"),
])
def test_a_corrupt_experiment_file_is_one_line_naming_it(experiment, capsys, text, detail):
    (experiment / "mathtune.json").write_text(text)
    line = _one_line_error(capsys, "report", experiment)
    assert line.startswith(f"mathtune: error: {experiment / 'mathtune.json'}: {detail}"), line


# ---------------------------------------------------------------------------------------------- result.json
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real, shrunk `mathtune train` run."""
    out = tmp_path_factory.mktemp("records") / "run"
    sets = ["epochs=1", "limit=64", "hidden=8", "decoder_hidden=8", "threads=1", "batch_size=32"]
    assert main(["train", "arith-text2text", *[a for s in sets for a in ("--set", s)], "--out", str(out), "-q"]) == 0
    return out


def test_mathtune_train_writes_a_run_record(run):
    record = RunRecord.read(run)
    assert record.version == RUN_VERSION and record.family == "arith-text2text"
    assert record.config["hidden"] == 8 and record.config["epochs"] == 1
    assert record.best["epoch"] == 1 and 0.0 <= record.best["val_exact_match"] <= 1.0 and record.last["epoch"] == 1
    assert record.wall_time_s > 0 and record.data and record.provenance[0]["threads"] == 1
    assert record.resumed_after_epoch is None and record.extra == {}
    keys = list(json.loads((run / "result.json").read_text()))
    assert keys == ["family", "config", "best", "last", "wall_time_s", "data", "provenance", "version"]
    assert read_run(run) == record  # what `mathtune ship` reads


def test_run_record_round_trips_and_keeps_what_it_does_not_know(tmp_path):
    record = RunRecord(family="f", config={"a": 1}, best={"epoch": 2, "val_x": 0.5}, last={"epoch": 3},
                       wall_time_s=12.5, data="64 queries", resumed_after_epoch=1, this_process_wall_time_s=4.0,
                       extra={"campaign": "c1"})
    path = record.write(tmp_path)
    assert path == tmp_path / "result.json" and RunRecord.read(tmp_path) == record
    assert list(json.loads(path.read_text()))[-3:] == ["this_process_wall_time_s", "campaign", "version"]
    older = {k: v for k, v in record.to_dict().items() if k not in ("version", "provenance")}
    path.write_text(json.dumps(older))  # a run from before runs recorded a version or their machine
    assert RunRecord.read(tmp_path).provenance is None and RunRecord.read(tmp_path).version == 1


def test_a_bad_run_record_is_one_line_naming_it(run, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    path = folder / "result.json"
    cases = [
        (None, f"{folder}: not a finished `mathtune train` run (no result.json)"),
        ("{oops", f"{path}: unreadable run record (Expecting property name"),
        ('{"family": "arith-text2text", "config": {}}', f"{path}: unreadable run record (no 'best')"),
        ('{"family": "arith-text2text", "config": [], "best": {}}',
         f"{path}: unreadable run record ('config' is not a dict)"),
        (json.dumps({**json.loads((run / "result.json").read_text()), "version": RUN_VERSION + 1}),
         f"{path}: written by a newer mathtune (version {RUN_VERSION + 1}); this one reads up to {RUN_VERSION}"),
    ]
    for text, message in cases:
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_text(text)
        with pytest.raises(RecordError) as exc:
            RunRecord.read(folder)
        assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
        with pytest.raises(ShipError) as exc:  # `mathtune ship`'s reader: the same line
            read_run(folder)
        assert str(exc.value).startswith(message)
    assert _one_line_error(capsys, "ship", "x", folder, "--produced-by", "x", "--configs-dir", tmp_path / "c") == \
        f"mathtune: error: {cases[-1][1]}"
    with pytest.raises(RecordError, match="no such run folder"):
        RunRecord.read(tmp_path / "gone")


# ---------------------------------------------------------------------------------------------- shipped files
def test_there_are_shipped_files_of_both_kinds():
    kinds = {ShippedRecord.read(p).family.split("-")[0] for p in SHIPPED}
    assert {"arith", "t2m"} <= kinds


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_file_reads_through_its_record_unchanged(path):
    raw = json.loads(path.read_text())
    record = ShippedRecord.read(path)
    assert record.version == SHIPPED_VERSION and record.extra == {}  # the record knows every key they hold
    assert record.figure == raw["figure"] and record.config == raw["config"] and record.family == raw["family"]
    # nothing lost or added (files shipped before records were versioned carry no version; newer ones the current)
    assert raw.get("version", SHIPPED_VERSION) == SHIPPED_VERSION
    assert {k: v for k, v in record.to_dict().items() if k != "version"} == \
        {k: v for k, v in raw.items() if k != "version"}


def test_shipped_record_round_trips_with_extra_keys(tmp_path):
    record = ShippedRecord(family="arith-text2text", figure={"val_exact_match": 0.5, "epoch": 3},
                           config={"hidden": 8}, measured_on="64 queries", wall_time_s=1.5, date="2026-12-07",
                           produced_by="mathtune train ...", train_command="mathtune train ... --config x.json",
                           search={"experiment": "e"}, extra={"campaign": "c1"})
    text = record.write(tmp_path / "x.json").read_text()
    assert text.endswith("}\n") and ShippedRecord.read(tmp_path / "x.json") == record
    assert list(json.loads(text))[-4:] == ["search", "config", "campaign", "version"]
    assert "note" not in json.loads(text) and "provenance" not in json.loads(text)  # left out while unset
    assert load_shipped(tmp_path)[0].record == record


def test_a_newer_or_corrupt_shipped_file_is_one_line_naming_it(tmp_path, capsys):
    newer = tmp_path / "newer.json"
    payload = json.loads(SHIPPED[0].read_text())
    newer.write_text(json.dumps({**payload, "version": SHIPPED_VERSION + 1}))
    message = f"{newer}: written by a newer mathtune (version {SHIPPED_VERSION + 1}); this one reads up to " \
              f"{SHIPPED_VERSION}"
    with pytest.raises(RecordError) as exc:
        load_shipped(tmp_path)
    assert str(exc.value) == message
    assert _one_line_error(capsys, "train", payload["family"], "--config", newer) == f"mathtune: error: {message}"
    newer.write_text(json.dumps({**payload, "figure": [0.5]}))
    wrong_type = f"{newer}: unreadable shipped configuration ('figure' is not a dict)"
    with pytest.raises(RecordError, match=re.escape(wrong_type)):
        load_shipped(tmp_path)
    newer.write_text("{oops")
    with pytest.raises(RecordError, match=re.escape(f"{newer}: unreadable shipped configuration (Expecting")):
        load_shipped(tmp_path)
