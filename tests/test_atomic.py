"""The one atomic writer: a reader never sees half a file, a failed write leaves the old file and no litter."""

import json

import pytest

from mathtune.trainables.atomic import atomic_file, read_json, write_json, write_text


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
