"""bench/pixel_baseline.py: what the reference's text2img pixel metric can tell apart, measured on real MNIST."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mathtune.trainables.arith.image_data import build_image_arith
from mathtune.trainables.arith.mnist import IMAGES_FILE

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
pytestmark = pytest.mark.skipif(not (MNIST_DIR / f"{IMAGES_FILE}.gz").is_file(),
                                reason=f"real MNIST not found in {MNIST_DIR} (see shared/data/PROVENANCE.md)")


def _bench():
    spec = importlib.util.spec_from_file_location("pixel_baseline", ROOT / "bench" / "pixel_baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_best_image_per_character_lies_between_a_blank_image_and_the_ceiling():
    bench = _bench()
    data = build_image_arith("+-", 0.5, 0, render="answers", limit=300)
    images = data.images[data.part("test")]
    blank, full = bench.exact_fractions(images)
    learnt, bound = bench.best_per_character(data, "test")
    assert blank <= bound <= blank + full
    assert learnt <= bound
    # the bound, recomputed character by character: per pixel, the larger of "exactly 0" and "exactly 255"
    chars = data.y[data.part("test")]
    total = sum(int(np.maximum((images[chars == c] == 0).sum(0), (images[chars == c] == 255).sum(0)).sum())
                for c in set(chars.ravel().tolist()))
    assert bound == total / images.size
    assert 0.5 < learnt < 1.0


def test_the_command_prints_one_row_per_split(capsys):
    assert _bench().main(["--splits", "0.5"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 0.50 |")]
    assert len(rows) == 1 and rows[0].count("%") == 4
