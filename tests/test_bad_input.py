"""Bad input everywhere: one line on stderr naming what and where, exit 2, no traceback, nothing lost.

Every case drives the `mathtune` command line: in-process through ``main`` (fast, no Ray needed: every
bad input is refused before Ray starts), and a sample of them through the installed executable.
"""

import gzip
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from mathtune.search.cli import main
from mathtune.trainables.registry import family_names

from .conftest import MATHTUNE, ROOT

SPACE = "arith-text2text-addsub"
SHRINK = {"epochs": 1, "limit": 128, "batch_size": 64, "threads": 1, "hidden": 16, "decoder_hidden": 16}
GOOD_SPACE = (ROOT / "spaces" / f"{SPACE}.yaml").read_text()
MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _sets(values: dict) -> list[str]:
    return sum((["--set", f"{k}={v}"] for k, v in values.items()), [])


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def _bad_checkpoint(folder: Path) -> Path:
    _write(folder / "state.pt", b"PK\x03\x04 truncated")
    _write(folder / "config.json", "{}")
    _write(folder / "metrics.json", "{}")
    return folder


def _small_mnist(folder: Path, n: int = 10, *, truncate: bool = False) -> Path:
    """A well-formed MNIST pair of ``n`` noise images (labels 0..9 in turn), the images file cut mid-stream
    when ``truncate``."""
    pixels = bytes((i * 7919) % 251 for i in range(784 * n))
    images = gzip.compress(b"\x00\x00\x08\x03" + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + pixels)
    labels = gzip.compress(b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + bytes(i % 10 for i in range(n)))
    _write(folder / MNIST_FILES[0], images[:len(images) // 2] if truncate else images)
    _write(folder / MNIST_FILES[1], labels)
    return folder


def _tensors_only(folder: Path, *names: str) -> Path:
    """A readable ``state.pt`` (one tensor, no model metadata) and ``names`` as empty JSON objects."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 1}, folder / "state.pt")
    for name in names:
        _write(folder / name, "{}")
    return folder


def _experiment_meta(folder: Path, **extra) -> Path:
    meta = {"name": folder.name, "storage_path": str(folder.parent), "study_name": folder.name,
            "resources": {"cpu": 1, "gpu": 0}, "options": {"overrides": {}}, "family": "arith-text2text",
            "optuna_storage": f"sqlite:///{folder / 'optuna.db'}", "metric": "val_exact_match", **extra}
    _write(folder / "mathtune.json", json.dumps(meta))
    _write(folder / "space.yaml", GOOD_SPACE)
    return folder


# the dev file is the same bad file, so the case never depends on the shared MathQA folder (train is read first)
_T2M_ON_ONE_FILE = ["train", "t2m-lstm", "--set", "train_file={t}/train.json", "--set", "dev_file={t}/train.json",
                    "--set", "epochs=1"]

# (id, argv with {t} for the test's folder, setup(t) or None, message fragments, skip-unless condition)
CASES = [
    # ---- space files
    ("space-bad-yaml", ["search", "{t}/s.yaml"], lambda t: _write(t / "s.yaml", "family: [unclosed"),
     ["{t}/s.yaml", "not valid YAML at line 1"]),
    ("space-not-utf8", ["search", "{t}/s.yaml"], lambda t: _write(t / "s.yaml", b"\xff\xfe\x00family"),
     ["{t}/s.yaml", "cannot read"]),
    ("space-empty", ["search", "{t}/s.yaml"], lambda t: _write(t / "s.yaml", ""), ["{t}/s.yaml", "expected a mapping"]),
    ("space-is-a-folder", ["search", "{t}/s.yaml"], lambda t: (t / "s.yaml").mkdir(),
     ["{t}/s.yaml", "space file not found"]),
    ("space-unknown-name", ["search", "no-such-space"], None, ["unknown space 'no-such-space'"]),
    ("space-unknown-family", ["search", "{t}/s.yaml"],
     lambda t: _write(t / "s.yaml", GOOD_SPACE.replace("family: arith-text2text", "family: nope")),
     ["{t}/s.yaml", "family: unknown family 'nope'"]),
    ("space-test-metric", ["search", "{t}/s.yaml"],
     lambda t: _write(t / "s.yaml", GOOD_SPACE.replace("metric: val_exact_match", "metric: test_exact_match")),
     ["{t}/s.yaml", "metric: 'test_exact_match' is not a validation metric"]),
    ("space-low-above-high", ["search", "{t}/s.yaml"],
     lambda t: _write(t / "s.yaml", GOOD_SPACE.replace("low: 0.0, high: 0.3", "low: 0.5, high: 0.3")),
     ["{t}/s.yaml", "params.dropout: low 0.5 is above high 0.3"]),
    ("space-point-outside", ["search", "{t}/s.yaml"],
     lambda t: _write(t / "s.yaml", GOOD_SPACE.replace("{hidden: 256,", "{hidden: 99,")),
     ["{t}/s.yaml", "points_to_evaluate[0].hidden: 99 lies outside the space"]),
    ("space-negative-cpus", ["search", "{t}/s.yaml"],
     lambda t: _write(t / "s.yaml", GOOD_SPACE.replace("resources: {cpus: 1, gpus: 0}", "resources: {cpus: -1}")),
     ["{t}/s.yaml", "resources.cpus: expected a number >= 0"]),
    # ---- search options
    ("num-samples-0", ["search", SPACE, "--num-samples", "0"], None, ["--num-samples must be at least 1"]),
    ("num-samples-not-int", ["search", SPACE, "--num-samples", "abc"], None,
     ["argument --num-samples: invalid int value: 'abc'"]),
    ("cpus-per-trial-negative", ["search", SPACE, "--cpus-per-trial", "-1"], None, ["per-trial resources", "cpus -1"]),
    ("gpus-per-trial-negative", ["search", SPACE, "--gpus-per-trial", "-1"], None, ["per-trial resources", "gpus -1"]),
    ("no-resources-at-all", ["search", SPACE, "--cpus-per-trial", "0", "--gpus-per-trial", "0"], None,
     ["not both zero"]),
    ("unknown-scheduler", ["search", SPACE, "--scheduler", "hyperband"], None,
     ["argument --scheduler: invalid choice: 'hyperband'"]),
    ("max-concurrent-0", ["search", SPACE, "--max-concurrent", "0"], None, ["--max-concurrent must be at least 1"]),
    ("max-failures-below-minus-1", ["search", SPACE, "--max-failures", "-5"], None, ["--max-failures must be -1"]),
    ("set-without-equals", ["search", SPACE, "--set", "hidden"], None, ["--set 'hidden': expected KEY=VALUE"]),
    ("set-empty-key", ["search", SPACE, "--set", "=3"], None, ["--set '=3': empty key"]),
    ("set-unknown-key", ["search", SPACE, "--set", "hiden=3"], None, ["--set hiden: unknown parameter"]),
    ("set-out-of-range", ["search", SPACE, "--set", "dropout=1.5"], None, ["--set dropout: 1.5 is above the maximum"]),
    ("set-wrong-type", ["search", SPACE, "--set", "hidden=wide"], None, ["--set hidden: expected int, got 'wide'"]),
    ("optuna-storage-password", ["search", SPACE, "--optuna-storage", "postgresql://u:hunter2@db.internal/optuna"],
     None, ["--optuna-storage postgresql://u:***@db.internal/optuna", "carries a password"]),
    ("optuna-storage-not-a-url", ["search", SPACE, "--optuna-storage", "optuna.db"], None,
     ["--optuna-storage 'optuna.db': not a SQLAlchemy URL"]),
    ("optuna-storage-unopenable", ["search", SPACE, "--optuna-storage", "sqlite:///{t}/no/such/dir/optuna.db"],
     None, ["--optuna-storage sqlite:///{t}/no/such/dir/optuna.db: cannot open"]),
    ("storage-path-is-a-file", ["search", SPACE, "--storage-path", "{t}/file", *_sets(SHRINK)],
     lambda t: _write(t / "file", "x"), ["{t}/file", "Not a directory"]),
    ("unknown-command", ["searhc", SPACE], None, ["argument COMMAND: invalid choice: 'searhc'"]),
    # ---- resume and report
    ("resume-not-an-experiment", ["resume", "{t}"], None, ["{t}: not a mathtune experiment"]),
    ("resume-missing-folder", ["resume", "{t}/gone"], None, ["{t}/gone: not a mathtune experiment"]),
    ("resume-corrupt-json", ["resume", "{t}/exp"], lambda t: _write(t / "exp" / "mathtune.json", '{"name": "exp",'),
     ["{t}/exp/mathtune.json: corrupt experiment file"]),
    ("resume-json-of-wrong-shape", ["resume", "{t}/exp"], lambda t: _write(t / "exp" / "mathtune.json", "[]"),
     ["{t}/exp/mathtune.json: corrupt experiment file (no 'name')"]),
    ("resume-without-tune-state", ["resume", "{t}/exp"], lambda t: _experiment_meta(t / "exp"),
     ["{t}/exp: Ray Tune saved no experiment state yet"]),
    ("status-missing-folder", ["status", "{t}/gone"], None, ["{t}/gone: not a mathtune experiment folder"]),
    ("status-corrupt-json", ["status", "{t}/exp"], lambda t: _write(t / "exp" / "mathtune.json", '{"name": "exp",'),
     ["{t}/exp/mathtune.json: unreadable experiment file"]),
    ("report-missing-folder", ["report", "{t}/gone"], None, ["{t}/gone: not a mathtune experiment"]),
    ("report-corrupt-json", ["report", "{t}/exp"], lambda t: _write(t / "exp" / "mathtune.json", "{oops"),
     ["{t}/exp/mathtune.json: unreadable experiment file"]),
    ("report-json-without-metric", ["report", "{t}/exp"], lambda t: _write(t / "exp" / "mathtune.json", "{}"),
     ["{t}/exp/mathtune.json: unreadable experiment file (no 'family')"]),
    # ---- train
    ("train-unknown-family", ["train", "arith-txt2txt"], None, ["unknown family 'arith-txt2txt'"]),
    ("train-config-malformed-json", ["train", "arith-text2text", "--config", "{t}/c.json"],
     lambda t: _write(t / "c.json", '{"hidden": 32,'), ["--config {t}/c.json: not valid JSON"]),
    ("train-config-not-an-object", ["train", "arith-text2text", "--config", "{t}/c.json"],
     lambda t: _write(t / "c.json", "[32]"), ["--config {t}/c.json: expected a JSON object"]),
    ("train-config-missing", ["train", "arith-text2text", "--config", "{t}/c.json"], None,
     ["--config {t}/c.json: file not found"]),
    ("train-epochs-0", ["train", "arith-text2text", "--set", "epochs=0"], None, ["epochs: 0 is below the minimum 1"]),
    ("train-out-is-a-file", ["train", "arith-text2text", "--out", "{t}/f", *_sets(SHRINK)],
     lambda t: _write(t / "f", "x"), ["{t}/f", "File exists"]),
    ("train-out-corrupt-checkpoint", ["train", "arith-text2text", "--out", "{t}/run", "-q", *_sets(SHRINK)],
     lambda t: _bad_checkpoint(t / "run" / "last"), ["{t}/run/last/state.pt: not a readable checkpoint"]),
    ("train-out-checkpoint-without-config", ["train", "arith-text2text", "--out", "{t}/run", "-q", *_sets(SHRINK)],
     lambda t: _tensors_only(t / "run" / "last", "metrics.json"),
     ["{t}/run/last: not a complete mathtune checkpoint (no config.json)"]),
    ("report-train-run-corrupt-config", ["report", "{t}/run"],
     lambda t: (_write(t / "run" / "last" / "config.json", "{oops"), _write(t / "run" / "last" / "metrics.json", "{}")),
     ["{t}/run/last/config.json: unreadable"]),
    # ---- data files
    ("mathqa-malformed-json", _T2M_ON_ONE_FILE,
     lambda t: _write(t / "train.json", '[{"Problem": "1 + 1",'), ["{t}/train.json: not valid JSON"]),
    ("mathqa-entry-without-fields", _T2M_ON_ONE_FILE,
     lambda t: _write(t / "train.json", '[{"Problem": "1 + 1"}]'), ["{t}/train.json: entry 0"]),
    ("mathqa-not-an-array", _T2M_ON_ONE_FILE,
     lambda t: _write(t / "train.json", '{"Problem": "1 + 1"}'), ["{t}/train.json: expected a JSON array"]),
    ("mathqa-missing-file", ["train", "t2m-lstm", "--set", "train_file={t}/train.json"], None,
     ["{t}/train.json: file not found"]),
    ("glove-malformed", [*_T2M_ON_ONE_FILE, "--set", "glove={t}/glove.txt"],
     lambda t: (_write(t / "train.json", '[{"Problem": "2 3", "linear_formula": "add(n0,n1)|", "answer": 5}]'),
                _write(t / "glove.txt", "the 0.1 zero.two\n")), ["glove: {t}/glove.txt"]),
    ("mnist-truncated-gzip", ["train", "arith-img2text", "--set", "mnist_dir={t}/mnist", "--set", "epochs=1",
                              "--set", "limit=64"],
     lambda t: _small_mnist(t / "mnist", truncate=True), ["{t}/mnist/t10k-images-idx3-ubyte.gz"],
     "arith-img2text"),
    ("mnist-pool-too-small", ["train", "arith-img2text", "--set", "mnist_dir={t}/mnist", "--set", "epochs=1",
                              "--set", "limit=64"],
     lambda t: _small_mnist(t / "mnist"), ["{t}/mnist", "no image of digit"], "arith-img2text"),
    ("mnist-folder-empty", ["train", "arith-img2text", "--set", "mnist_dir={t}/mnist", "--set", "epochs=1",
                            "--set", "limit=64"],
     lambda t: (t / "mnist").mkdir(), ["{t}/mnist/t10k-"], "arith-img2text"),
    # ---- prediction files and checkpoints for score / evaluate
    ("score-malformed-json", ["score", "{t}/p.json"], lambda t: _write(t / "p.json", "[{"),
     ["{t}/p.json: not valid JSON"], "score"),
    ("score-entry-without-predicted", ["score", "{t}/p.json"],
     lambda t: _write(t / "p.json", '[{"Problem": "2 3", "linear_formula": "add(n0,n1)|", "answer": 5}]'),
     ["{t}/p.json: entry 0: field 'predicted': missing"], "score"),
    ("score-missing-file", ["score", "{t}/p.json"], None, ["{t}/p.json: file not found"], "score"),
    ("evaluate-missing-checkpoint", ["evaluate", "{t}/ckpt", "{t}/dev.json"],
     lambda t: _write(t / "dev.json", "[]"), ["{t}/ckpt: no such checkpoint"], "evaluate"),
    ("evaluate-corrupt-checkpoint", ["evaluate", "{t}/ckpt", "{t}/dev.json"],
     lambda t: (_bad_checkpoint(t / "ckpt"), _write(t / "dev.json", "[]")), ["{t}/ckpt/state.pt"], "evaluate"),
    ("evaluate-corrupt-trial-checkpoint", ["evaluate", "{t}/trial", "{t}/dev.json"],
     lambda t: (_bad_checkpoint(t / "trial" / "checkpoint_000000"), _write(t / "dev.json", "[]")),
     ["{t}/trial/checkpoint_000000/state.pt"], "evaluate"),
    ("evaluate-missing-data-file", ["evaluate", "{t}/ckpt", "{t}/dev.json"], lambda t: _bad_checkpoint(t / "ckpt"),
     ["{t}/dev.json: data file not found"], "evaluate"),
    ("evaluate-folder-without-checkpoint", ["evaluate", "{t}/trial", "{t}/dev.json"],
     lambda t: ((t / "trial").mkdir(), _write(t / "dev.json", "[]")),
     ["{t}/trial: neither a checkpoint folder"], "evaluate"),
    ("evaluate-checkpoint-without-config", ["evaluate", "{t}/ckpt", "{t}/dev.json"],
     lambda t: (_tensors_only(t / "ckpt"), _write(t / "dev.json", "[]")),
     ["{t}/ckpt: not a complete mathtune checkpoint (no config.json)"], "evaluate"),
    ("evaluate-checkpoint-of-another-family", ["evaluate", "{t}/ckpt", "{t}/dev.json"],
     lambda t: (_tensors_only(t / "ckpt", "config.json"), _write(t / "dev.json", "[]")),
     ["{t}/ckpt: its model state does not say which family trained it"], "evaluate"),
    ("evaluate-unknown-shipped-model", ["evaluate", "pretrained:nonesuch", "{t}/dev.json"],
     lambda t: _write(t / "dev.json", "[]"), ["pretrained:nonesuch: no such shipped model", "pretrained:t2m"],
     "evaluate"),
]


def _available(requirement: str | None) -> bool:
    if requirement is None:
        return True
    if requirement in ("score", "evaluate"):  # mathtune's own commands (entry points): must be there, never skipped
        from mathtune.trainables.commands import family_commands

        assert requirement in family_commands(), f"mathtune {requirement} is not registered (mathtune.commands)"
        return True
    return requirement in family_names()


def _fill(items, t: Path):
    return [str(i).replace("{t}", str(t)) for i in items]


def _check_one_line_error(code: int, err: str, fragments: list[str]) -> None:
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mathtune") and ": error: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _run_main(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    return code, capsys.readouterr().err


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_table_is_large_enough():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    name, argv, setup, fragments, *requirement = case
    if not _available(requirement[0] if requirement else None):
        pytest.skip(f"{requirement[0]} is not part of this mathtune yet")
    monkeypatch.chdir(tmp_path)  # a stray default folder (runs/) would land here, and be seen
    t = tmp_path / "t"
    t.mkdir()
    if setup:
        setup(t)
    before = _snapshot(tmp_path)
    argv = _fill(argv, t)
    if argv[0] == "search" and "--storage-path" not in argv:
        argv += ["--storage-path", str(tmp_path / "runs")]
    code, err = _run_main(argv, capsys)
    _check_one_line_error(code, err, _fill(fragments, t))
    assert _snapshot(tmp_path) == before, "a refused command changed files"
    if argv[0] in ("search", "train") and "--out" not in argv:
        assert not (tmp_path / "runs").exists(), f"a refused {argv[0]} left a run folder"


# A sample through the installed executable: the same one line, exit 2 and no traceback from a real process.
EXECUTABLE_SAMPLE = ["unknown-scheduler", "space-bad-yaml", "train-out-corrupt-checkpoint", "mathqa-malformed-json"]


def test_the_executable_reports_bad_input_in_one_line(tmp_path):
    cases = {c[0]: c for c in CASES}
    procs = []
    for name in EXECUTABLE_SAMPLE:
        _, argv, setup, fragments, *requirement = cases[name]
        if not _available(requirement[0] if requirement else None):
            continue
        t = tmp_path / name
        t.mkdir()
        if setup:
            setup(t)
        argv = _fill(argv, t) + (["--storage-path", str(t / "runs")] if argv[0] == "search" else [])
        procs.append((name, t, fragments, subprocess.Popen([MATHTUNE, *argv], cwd=t, stdout=subprocess.PIPE,
                                                             stderr=subprocess.PIPE, text=True)))
    assert len(procs) == len(EXECUTABLE_SAMPLE)
    for name, t, fragments, proc in procs:
        _, err = proc.communicate(timeout=180)
        _check_one_line_error(proc.returncode, err, _fill(fragments, t))
        assert not (t / "runs").exists(), name  # no run folder left behind, not even an empty one


def test_unexecutable_programs_are_scored_wrong_not_crashed(tmp_path, capsys):
    if not _available("score"):
        pytest.skip("score is not part of this mathtune yet")
    problem = "a train covers 60 km in 2 hours . what is its speed ?"
    gold = "divide(n0,n1)|"
    predictions = ["divide(n0,n1)|",          # right
                   "divide(n0,const_0)|",     # division by zero
                   "add(n0,|",                # not a program
                   "frobnicate(n0,n1)|",      # unknown operation
                   "add(n7,n1)|",             # number the problem does not have
                   "add(#3,n1)|",             # reference to a step not computed
                   "power(const_100,const_100)|power(#0,#0)|",  # overflow
                   "",                        # nothing predicted
                   42]                        # not even text
    items = [{"Problem": problem, "linear_formula": gold, "answer": 30, "predicted": p} for p in predictions]
    path = _write(tmp_path / "p.json", json.dumps(items))
    out = tmp_path / "scored.json"
    code, err = _run_main(["score", str(path), "--out", str(out)], capsys)
    assert code == 0, err
    rows = json.loads(out.read_text())
    assert [r["exec_correct"] for r in rows] == [True] + [False] * (len(predictions) - 1)
    assert [r["em"] for r in rows] == [True] + [False] * (len(predictions) - 1)


@pytest.fixture(scope="module")
def finished_experiment(ray_session, tmp_path_factory):
    """A real one-trial experiment with its report written."""
    from mathtune.search import SearchOptions, run_search

    storage = tmp_path_factory.mktemp("keep")
    outcome = run_search(SPACE, SearchOptions(num_samples=1, storage_path=str(storage), name="keep", verbose=0,
                                              overrides=SHRINK, scheduler="none", dashboard=False))
    assert outcome.counts == {"TERMINATED": 1}
    assert main(["report", str(outcome.experiment_dir)]) == 0
    return outcome.experiment_dir


def test_bad_commands_against_an_experiment_lose_nothing(finished_experiment, tmp_path, capsys):
    exp = finished_experiment
    copy = tmp_path / "copy"
    shutil.copytree(exp, copy)
    (copy / "mathtune.json").write_text((copy / "mathtune.json").read_text()[:40])  # cut mid-write
    trial = next(exp.glob("trial_*"))
    bad_space = _write(tmp_path / "bad.yaml", GOOD_SPACE.replace("mode: max", "mode: up"))
    before, before_copy = _snapshot(exp), _snapshot(copy)
    assert "report.md" in before and "mathtune.json" in before
    commands = [
        (["search", SPACE, "--storage-path", str(exp.parent), "--name", exp.name], ["already holds an experiment"]),
        (["search", str(bad_space), "--storage-path", str(exp.parent), "--name", exp.name], ["mode: 'up'"]),
        (["search", SPACE, "--storage-path", str(exp.parent), "--name", exp.name, "--set", "hidden=1"],
         ["hidden: 1 is below"]),
        (["report", str(exp), str(tmp_path / "missing")], [str(tmp_path / "missing")]),
        (["report", str(exp), "--out", str(exp / "report.md")], [str(exp / "report.md")]),
        (["resume", str(copy)], [str(copy / "mathtune.json"), "corrupt experiment file"]),
        (["train", "arith-text2text", "--out", str(exp / "mathtune.json")], [str(exp / "mathtune.json")]),
        (["score", str(exp / "report.md")], [str(exp / "report.md"), "not valid JSON"]),
        (["evaluate", str(trial), str(tmp_path / "missing.json")], ["missing.json: data file not found"]),
    ]
    for argv, fragments in commands:
        if argv[0] in ("score", "evaluate") and not _available(argv[0]):
            continue
        code, err = _run_main(argv, capsys)
        _check_one_line_error(code, err, fragments)
    assert _snapshot(exp) == before
    assert _snapshot(copy) == before_copy
    assert not list(exp.rglob("*.tmp")) and not list(exp.rglob(".*.tmp"))
