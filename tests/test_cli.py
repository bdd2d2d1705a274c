"""The mathtune command line, run as a user runs it."""

import json
import subprocess

import pytest

from mathtune.search.cli import main

from .conftest import MATHTUNE

TINY = ["--set", "limit=128", "--set", "hidden=16", "--set", "decoder_hidden=16", "--set", "batch_size=64",
        "--set", "threads=1"]


def run(*args, timeout=120):
    return subprocess.run([MATHTUNE, *args], capture_output=True, text=True, timeout=timeout)


def test_train_prints_progress_writes_result_and_resumes(tmp_path, capsys):
    out = tmp_path / "t"
    first = run("train", "arith-text2text", *TINY, "--set", "epochs=1", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "epoch 1/1" in first.stdout and "val_exact_match" in first.stdout
    summary = json.loads((out / "result.json").read_text())
    assert summary["config"]["hidden"] == 16 and summary["best"]["epoch"] == 1
    second = run("train", "arith-text2text", *TINY, "--set", "epochs=2", "--out", str(out))
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stdout and "epoch 2/2" in second.stdout and "epoch 1/2" not in second.stdout
    # the resumed run's wall time counts the first process's epoch too
    resumed = json.loads((out / "result.json").read_text())
    first_epoch = json.loads((out / "last" / "metrics.json").read_text())["history"][0]["epoch_time_s"]
    assert resumed["resumed_after_epoch"] == 1 and "since resuming after epoch 1" in second.stdout
    assert resumed["wall_time_s"] == pytest.approx(resumed["this_process_wall_time_s"] + first_epoch)
    # `mathtune report` on the run folder: its own report (curves, selected and last epoch, configuration)
    assert main(["report", str(out)]) == 0  # the command's own entry point, in this process
    assert f"report written: {out / 'report.md'}" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "Family `arith-text2text`" in md and "finished after 2 epochs" in md
    assert "| selected (" in md and "| last (2) |" in md and "| hidden | 16 |" in md and "| threads | 1 |" in md
    assert (out / "report_files" / "t-curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (out / "report.html").read_text()
    (out / "result.json").rename(out / "result.json.bak")  # as while the run is still training
    assert main(["report", str(out), "--format", "md"]) == 0
    assert "still training or interrupted: epoch 2 of 2 written" in (out / "report.md").read_text()
    (out / "result.json.bak").rename(out / "result.json")
    # a config file (as `mathtune best` writes it) is accepted; --set overrides it
    cfg = tmp_path / "best.json"
    cfg.write_text(json.dumps({"config": {**summary["config"], "epochs": 1}, "val_exact_match": 0.0}))
    assert main(["train", "arith-text2text", "--config", str(cfg), "--set", "hidden=8", "--out", str(tmp_path / "c"),
                 "-q"]) == 0
    assert json.loads((tmp_path / "c" / "result.json").read_text())["config"]["hidden"] == 8


def test_families_and_spaces_are_listed(capsys):
    assert main(["families", "-v"]) == 0
    out = capsys.readouterr().out
    assert "arith-text2text" in out and "extra_layers" in out
    assert main(["spaces"]) == 0
    assert "arith-text2text-addsub" in capsys.readouterr().out


def test_help_explains_the_search_options():
    proc = run("search", "--help")
    assert proc.returncode == 0
    for option in ("--num-samples", "--max-concurrent", "--cpus-per-trial", "--gpus-per-trial", "--scheduler",
                   "--storage-path", "--name", "--address", "--seed", "--optuna-storage"):
        assert option in proc.stdout


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    cases = [
        (["train", "no-such-family"], "unknown family 'no-such-family'"),
        (["train", "arith-text2text", "--set", "hidden"], "--set 'hidden': expected KEY=VALUE"),
        (["train", "arith-text2text", "--set", "hidden=-3"], "hidden: -3 is below the minimum"),
        (["train", "arith-text2text", "--config", str(tmp_path / "none.json")], "file not found"),
        (["resume", str(tmp_path)], "not a mathtune experiment"),
        (["search", "arith-text2text-addsub", "--set", "nope=1"], "--set nope: unknown parameter"),
        (["search", "arith-text2text-addsub", "--num-samples", "0", "--storage-path", str(tmp_path / "r")],
         "--num-samples must be at least 1"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()
