"""What every text-to-program test module shares: the real COL775 files (the module skips without them) and one
torch thread per test. A module imports the two fixtures by name to use them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

COL775 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mathqa" / "col775"


@pytest.fixture(scope="module", autouse=True)
def real_data():
    if not (COL775 / "train.json").is_file() or not (COL775 / "dev.json").is_file():
        pytest.skip(f"real COL775 files not found in {COL775} (see shared/data/PROVENANCE.md)")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
