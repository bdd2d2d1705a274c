"""The one atomic writer: a reader never sees half a file or folder, a failed write leaves the old one and no litter."""

import json
import os
import shutil

import pytest

from mathtune.trainables.atomic import (atomic_file, atomic_folder, backup_of, read_json, readable_folder,
                                        recover_folder, swap_folder, write_json, write_text)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "result.json"
    write_json(path, {"best": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_file(path) as fh:
            fh.write(b'{"best": 0.')
            raise RuntimeError("killed mid-write")
    assert read_json(path) == {"best": 0.5}
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]


def test_text_and_json_round_trip_with_paths_written_as_text(tmp_path):
    assert write_text(tmp_path / "r.md", "ünïcode\n").read_text(encoding="utf-8") == "ünïcode\n"
    write_json(tmp_path / "m.json", {"dir": tmp_path, "n": 1})
    assert json.loads((tmp_path / "m.json").read_text()) == {"dir": str(tmp_path), "n": 1}
    with pytest.raises(ValueError):
        (tmp_path / "bad.json").write_text("{")
        read_json(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------ folders
FILES = ("state.pt", "config.json", "metrics.json")


def _folder(path, tag):
    path.mkdir(parents=True)
    for name in FILES:
        (path / name).write_text(f"{tag} {name}")
    return path


def _complete(path):
    """The tag of a complete folder (every file, all of one tag), else None."""
    if path is None or sorted(p.name for p in path.iterdir()) != sorted(FILES):
        return None
    tags = {(path / name).read_text().split()[0] for name in FILES}
    return tags.pop() if len(tags) == 1 else None


def _steps(monkeypatch, after):
    """Call ``after()`` after every rename and every removal a folder swap makes."""
    real_rename, real_rmtree = os.rename, shutil.rmtree

    def rename(src, dst):
        real_rename(src, dst)
        after()

    def rmtree(path, *args, **kwargs):
        real_rmtree(path, *args, **kwargs)
        after()

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(shutil, "rmtree", rmtree)


def test_a_folder_swap_keeps_one_complete_folder_at_every_step(tmp_path, monkeypatch):
    """Between any two steps of swap_folder a reader finds a complete folder, the old one or the new one."""
    dest = _folder(tmp_path / "last", "old")
    seen = []
    _steps(monkeypatch, lambda: seen.append(_complete(readable_folder(dest))))
    swap_folder(_folder(tmp_path / ".new", "new"), dest)
    assert len(seen) >= 3 and None not in seen and seen[-1] == "new"
    assert _complete(dest) == "new" and [p.name for p in tmp_path.iterdir()] == ["last"]


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_a_swap_killed_at_any_step_is_found_by_readers_and_recovered_by_the_writer(tmp_path, monkeypatch,
                                                                                  crash_at):
    """A kill after step k of a swap: readers read a complete folder where it is; the writer's recover_folder
    puts it back under the final name, and the next swap works."""
    dest = _folder(tmp_path / "last", "old")
    count = [0]

    def crash():
        count[0] += 1
        if count[0] == crash_at:
            raise KeyboardInterrupt

    _steps(monkeypatch, crash)
    with pytest.raises(KeyboardInterrupt):
        swap_folder(_folder(tmp_path / ".new", "new"), dest)
    monkeypatch.undo()
    assert _complete(readable_folder(dest)) in ("old", "new")
    assert recover_folder(dest) == dest and _complete(dest) in ("old", "new")
    assert not backup_of(dest).exists()
    swap_folder(_folder(tmp_path / ".newer", "newer"), dest)
    assert _complete(dest) == "newer" and sorted(p.name for p in tmp_path.iterdir() if p.name != ".new") == ["last"]


def test_atomic_folder_swaps_in_a_filled_folder_and_leaves_nothing_on_failure(tmp_path):
    dest = _folder(tmp_path / "best", "old")
    with pytest.raises(RuntimeError):
        with atomic_folder(dest) as tmp:
            (tmp / "state.pt").write_text("half")
            raise RuntimeError("killed while filling")
    assert _complete(dest) == "old" and [p.name for p in tmp_path.iterdir()] == ["best"]
    with atomic_folder(tmp_path / "deep" / "best") as tmp:
        for name in FILES:
            (tmp / name).write_text(f"new {name}")
    assert _complete(tmp_path / "deep" / "best") == "new" and len(list((tmp_path / "deep").iterdir())) == 1
