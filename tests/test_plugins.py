"""A model family from a package of its own (tests/example_family), installed for real, used through the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mathtune.trainables import ConfigError, get_family
from mathtune.trainables.registry import family_names

from .conftest import MATHTUNE

EXAMPLE = Path(__file__).parent / "example_family"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """The example package pip-installed into a folder of its own (not into this environment), on PYTHONPATH."""
    site = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(EXAMPLE)],
                          capture_output=True, text=True, timeout=300, cwd=build)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(site.glob("mathtune_parity-*.dist-info/entry_points.txt"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return site, env


def _cli(env, *args, timeout=300):
    return subprocess.run([MATHTUNE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_built_in_families_come_from_the_entry_point_group():
    assert {"arith-text2text", "arith-img2text", "arith-text2img", "t2m-lstm", "t2m-attn", "t2m-bert-frozen",
            "t2m-bert-ft"} <= set(family_names())
    assert "parity-mlp" not in family_names()  # the example is installed for the tests below only
    with pytest.raises(ConfigError, match="unknown family 'nope'"):
        get_family("nope")


def test_a_family_from_its_own_package_is_listed_trained_searched_and_reported(plugin_env, tmp_path):
    site, env = plugin_env
    listed = _cli(env, "families", "-v")
    assert listed.returncode == 0 and "parity-mlp" in listed.stdout and "length of the bit strings" in listed.stdout
    trained = _cli(env, "train", "parity-mlp", "--set", "epochs=2", "--set", "threads=1", "--out",
                   str(tmp_path / "train"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = json.loads((tmp_path / "train" / "result.json").read_text())
    assert result["family"] == "parity-mlp" and 0.0 <= result["best"]["val_accuracy"] <= 1.0
    space = site / "mathtune_parity" / "parity.yaml"
    searched = _cli(env, "search", str(space), "--num-samples", "2", "--max-concurrent", "1", "--no-dashboard",
                    "--storage-path", str(tmp_path / "runs"), "--name", "par", "--set", "epochs=2", timeout=600)
    assert searched.returncode == 0, searched.stdout[-3000:] + searched.stderr[-3000:]
    assert "best (all): val_accuracy" in searched.stdout
    exp = tmp_path / "runs" / "par"
    report = (exp / "report.md").read_text()
    assert "parity-mlp" in report and "val accuracy" in report
    best = _cli(env, "best", str(exp))
    assert best.returncode == 0 and json.loads(best.stdout)["family"] == "parity-mlp"
    # the package's own command, beside mathtune's
    assert "parity-predict" in _cli(env, "--help").stdout
    predicted = _cli(env, "parity-predict", str(tmp_path / "train"), "1011")
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.startswith("predicted parity: ") and "(true parity: 1)" in predicted.stdout
    bad = _cli(env, "parity-predict", str(tmp_path / "train"), "10x")
    assert bad.returncode == 2 and "BITS '10x': expected 4 characters of 0 and 1" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_plugin_familys_bad_input_is_one_line(plugin_env, tmp_path):
    _, env = plugin_env
    for sets, message in ((["examples=4"], "examples: 4 is below the minimum 8"),
                          (["bits=16", "hidden=8"], "hidden: 8 is narrower than the 16 bits")):
        bad = _cli(env, "train", "parity-mlp", *sum((["--set", s] for s in sets), []), "--out", str(tmp_path / "b"))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "b").exists()


def test_a_new_family_folder_is_packaged_without_an_edit(tmp_path):
    """setup.py finds packages: a copy of the source tree with one more family folder builds a wheel that
    holds it, with pyproject.toml and setup.py untouched."""
    import shutil
    import zipfile

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    shutil.copytree(root, src, ignore=shutil.ignore_patterns(".venv", "runs", "build", "*.egg-info", ".git",
                                                             "__pycache__", "tests", "docs", "bench", "weights"))
    (src / "trainables" / "newfam").mkdir()
    (src / "trainables" / "newfam" / "__init__.py").write_text('"""A family folder added by a user."""\n')
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("mathtune-*.whl"))).namelist()
    assert "mathtune/trainables/newfam/__init__.py" in names
    assert {"mathtune/search/cli.py", "mathtune/trainables/t2m/family.py", "mathtune/spaces/arith-text2text-addsub.yaml",
            "mathtune/analysis/reference.yaml", "mathtune/trainables/replay.py"} <= set(names)


def test_a_command_names_its_handler_by_path_and_it_is_imported_when_the_command_runs():
    from mathtune.trainables.commands import Command, CommandError

    def arguments(p):
        p.add_argument("x")

    command = Command(help="h", description="d", add_arguments=arguments, run="json:dumps")
    assert command.handler() is json.dumps and command(["a"]) == '["a"]'
    assert Command(help="h", description="d", add_arguments=arguments, run=len)([1, 2]) == 2  # a function itself
    for bad in ("json", "json:", ":dumps", "json:dumps x"):
        with pytest.raises(ValueError, match="expected \"module:function\""):
            Command(help="h", description="d", add_arguments=arguments, run=bad)
    for missing, needle in (("mathtune_no_such_module:run", "ModuleNotFoundError"), ("json:no_such", "AttributeError")):
        with pytest.raises(CommandError, match=f"^{missing} cannot be imported: {needle}"):
            Command(help="h", description="d", add_arguments=arguments, run=missing)(None)


def test_building_the_parser_imports_no_command_handler():
    """Every `mathtune` command line builds the parser (--help included): the t2m commands' handlers, and the model
    code they import, are loaded only when one of them runs."""
    probe = ("import sys; from mathtune.search.cli import build_parser; build_parser(); "
             "print(' '.join(m for m in ('mathtune.trainables.t2m.cli', 'mathtune.trainables.t2m.cli_run', "
             "'mathtune.trainables.t2m.evaluation', 'mathtune.trainables.t2m.models') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["mathtune.trainables.t2m.cli"]
