"""MNIST reader, image-sequence rendering and pools of the arithmetic image families."""

from __future__ import annotations

import gzip
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from mathtune.trainables.arith import images as im
from mathtune.trainables.arith.mnist import (IMAGES_FILE, LABELS_FILE, MnistError, find_mnist_folder, load_mnist,
                                             read_idx_images, read_idx_labels)

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
IMAGES_MD5 = "2646ac647ad5339dbf082846283269ea"  # decompressed t10k-images-idx3-ubyte (PROVENANCE.md)

needs_mnist = pytest.mark.skipif(not (MNIST_DIR / f"{IMAGES_FILE}.gz").is_file(),
                                 reason=f"real MNIST not found in {MNIST_DIR} (see shared/data/PROVENANCE.md)")


@pytest.fixture(scope="module")
def mnist():
    if not (MNIST_DIR / f"{IMAGES_FILE}.gz").is_file():
        pytest.skip(f"real MNIST not found in {MNIST_DIR} (see shared/data/PROVENANCE.md)")
    return load_mnist(MNIST_DIR)


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return b"".join(int(v).to_bytes(4, "big") for v in (magic, *dims)) + payload


def _write_pair(folder: Path, n_images: int = 3, n_labels: int = 3, *, images_magic: int = 2051,
                labels_magic: int = 2049, cut: int = 0, compress: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    img = _idx(images_magic, (n_images, 28, 28), rng.integers(0, 256, n_images * 784, dtype=np.uint8).tobytes())
    lab = _idx(labels_magic, (n_labels,), (np.arange(n_labels) % 10).astype(np.uint8).tobytes())
    if cut:
        img = img[:-cut]
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    ip, lp = folder / (IMAGES_FILE + suffix), folder / (LABELS_FILE + suffix)
    ip.write_bytes(gzip.compress(img) if compress else img)
    lp.write_bytes(gzip.compress(lab) if compress else lab)
    return ip, lp


# ------------------------------------------------------------------------------------------- reader
@needs_mnist
def test_reader_on_real_files_matches_provenance():
    """The real test set reads as 10,000 28x28 uint8 images with labels 0..9 and the published md5."""
    images = read_idx_images(MNIST_DIR / f"{IMAGES_FILE}.gz")
    labels = read_idx_labels(MNIST_DIR / f"{LABELS_FILE}.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    raw = gzip.decompress((MNIST_DIR / f"{IMAGES_FILE}.gz").read_bytes())
    assert hashlib.md5(raw).hexdigest() == IMAGES_MD5
    assert raw[16:] == images.tobytes()


def test_uncompressed_files_and_env_var(tmp_path, monkeypatch):
    """Uncompressed IDX files without .gz load too, from the folder named by MATHTUNE_MNIST."""
    _write_pair(tmp_path, compress=False)
    monkeypatch.setenv("MATHTUNE_MNIST", str(tmp_path))
    assert find_mnist_folder() == tmp_path
    images, labels = load_mnist()
    assert images.shape == (3, 28, 28) and labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("case, fragment", [
    ("truncated", "truncated"),
    ("magic", "wrong magic"),
    ("gzip", "gzip"),
    ("count", "labels but"),
    ("missing", "not found"),
    ("label", "outside 0..9"),
])
def test_corrupt_files_raise_mnist_error_naming_the_file(tmp_path, case, fragment):
    """Each kind of damage gives one MnistError line that names the file and the problem."""
    ip, lp = _write_pair(tmp_path, n_labels=4 if case == "count" else 3, images_magic=2049 if case == "magic" else 2051,
                         cut=100 if case == "truncated" else 0)
    bad = lp if case == "count" else ip
    if case == "gzip":
        ip.write_bytes(ip.read_bytes()[:40])  # a gzip stream cut short
    elif case == "missing":
        ip.unlink()
    elif case == "label":
        lp.write_bytes(gzip.compress(_idx(2049, (3,), bytes([1, 12, 3]))))
        bad = lp
    with pytest.raises(MnistError) as err:
        load_mnist(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and fragment in msg and bad.name in msg


def test_missing_default_folder_says_how_to_get_mnist(monkeypatch, tmp_path):
    """Without a folder, env var or default folder, the error names the files, the env var and the option."""
    from mathtune.trainables.arith import mnist as mnist_module

    monkeypatch.delenv("MATHTUNE_MNIST", raising=False)
    monkeypatch.setattr(mnist_module, "_PROJECT_ROOT", tmp_path / "project")  # no ../shared/data/mnist there
    with pytest.raises(MnistError) as err:
        find_mnist_folder()
    msg = str(err.value)
    assert IMAGES_FILE in msg and LABELS_FILE in msg and "MATHTUNE_MNIST" in msg and "\n" not in msg


# ------------------------------------------------------------------------------------------- glyphs, ids
def test_to_ids_accepts_strings_and_ids():
    """Padded strings, (N, L) characters and ids all map to the query alphabet's ids."""
    expected = np.array([[9, 11, 7, 13, 13], [2, 2, 10, 1, 3]])
    assert (im.to_ids(["9-7  ", "22+13"]) == expected).all()
    assert (im.to_ids(np.array([list("9-7  "), list("22+13")])) == expected).all()
    assert (im.to_ids(expected) == expected).all()
    with pytest.raises(ValueError):
        im.to_ids(["9/7  "])


def test_alphabet_matches_text_data_module():
    """The image ids are the ids of arith.data (same alphabet)."""
    data = pytest.importorskip("mathtune.trainables.arith.data")
    assert im.ALPHABET == data.ALPHABET


def test_glyphs_differ_under_jitter_and_are_deterministic():
    """Jittered glyphs differ from each other, are reproducible for a seed, and carry ink."""
    for op in "+-*":
        g = im.draw_glyphs(op, 50, np.random.default_rng(1))
        assert g.shape == (50, 28, 28) and g.dtype == np.uint8
        assert len({x.tobytes() for x in g}) == 50
        assert (g.max(axis=(1, 2)) > 200).all() and (g.reshape(50, -1) > 128).sum(1).min() >= 15
        assert (g == im.draw_glyphs(op, 50, np.random.default_rng(1))).all()
    clean = im.draw_glyphs("+", 2, np.random.default_rng(0), jitter=0.0)
    assert (clean[0] == clean[1]).all()
    plus = im.draw_glyphs("+", 1, np.random.default_rng(0), jitter=0)
    minus = im.draw_glyphs("-", 1, np.random.default_rng(0), jitter=0)
    assert (plus[0, :, 13] > 128).sum() > 10 and (minus[0, :, 13] > 128).sum() < 5  # the plus has a vertical bar


# ------------------------------------------------------------------------------------------- rendering
def test_render_places_right_classes_glyphs_and_blanks(mnist):
    """Digits get an image of their class from the pool, operators a glyph, padding the blank image."""
    images, labels = mnist
    chars = ["9-7  ", "22+13", "99*9 "]
    out, index = im.render_sequences(chars, images, labels, np.random.default_rng(0), return_index=True)
    assert out.shape == (3, 5, 28, 28) and out.dtype == np.uint8 and index.shape == (3, 5)
    ids = im.to_ids(chars)
    digit = ids < 10
    assert (labels[index[digit]] == ids[digit]).all()
    assert (out[digit] == images[index[digit]]).all()
    assert (index[~digit] == -1).all()
    assert (out[ids == im.PAD_ID] == 0).all()
    assert (out[(ids >= 10) & (ids < 13)].max(axis=(1, 2)) > 200).all()


def test_render_is_deterministic_per_seed(mnist):
    """Same seed, same images; another seed, other images."""
    images, labels = mnist
    chars = ["12+34", "56-78", "9*9  "] * 20
    a = im.render_sequences(chars, images, labels, np.random.default_rng(3))
    b = im.render_sequences(chars, images, labels, np.random.default_rng(3))
    c = im.render_sequences(chars, images, labels, np.random.default_rng(4))
    assert (a == b).all() and not (a == c).all()


def test_render_restricted_pool(mnist):
    """With pool_index, every digit image comes from that part of the pool."""
    images, labels = mnist
    part = np.arange(0, 10000, 7)
    _, index = im.render_sequences(["0123456789"] * 30, images, labels, np.random.default_rng(0),
                                   pool_index=part, return_index=True)
    assert np.isin(index, part).all()
    with pytest.raises(ValueError, match="no image of digit"):
        im.render_sequences(["5"], images, labels, np.random.default_rng(0), pool_index=np.flatnonzero(labels != 5))


# ------------------------------------------------------------------------------------------- pools
def test_split_pool_is_stratified_and_disjoint(mnist):
    """split_pool partitions every index exactly once, each class in the same proportions."""
    _, labels = mnist
    parts = im.split_pool(None, labels, [0.2, 0.5, 0.3], np.random.default_rng(0))
    allidx = np.concatenate(parts)
    assert len(allidx) == len(labels) and len(np.unique(allidx)) == len(labels)
    for part, f in zip(parts, [0.2, 0.5, 0.3]):
        share = np.bincount(labels[part], minlength=10) / np.bincount(labels)
        assert np.allclose(share, f, atol=0.002)


def test_pool_fractions_follow_the_split_with_minimums():
    """The non-classifier 80% follows the train/test proportion, each pool at least 10%."""
    assert im.pool_fractions(13000, 7000) == (0.52, 0.28, 0.2)
    assert im.pool_fractions(2000, 18000) == (0.1, 0.7, 0.2)
    assert im.pool_fractions(19800, 200) == (0.7, 0.1, 0.2)


def test_build_image_split_pools_disjoint_and_classifier_pool_fixed(mnist):
    """Train-query, test-query and classifier pools share no image; the classifier pool ignores the split."""
    images, labels = mnist
    rng = np.random.default_rng(0)
    train_chars = rng.integers(0, 14, (650, 5))
    test_chars = rng.integers(0, 14, (350, 5))
    s = im.build_image_split(train_chars, test_chars, seed=5, images=images, labels=labels)
    p = s.pools
    assert len(np.intersect1d(p.train, p.test)) == 0
    assert len(np.intersect1d(p.train, p.classifier_eval)) == 0
    assert len(np.intersect1d(p.test, p.classifier_eval)) == 0
    assert len(p.train) + len(p.test) + len(p.classifier_eval) == len(labels)
    assert (len(p.train), len(p.test), len(p.classifier_eval)) == (5200, 2800, 2000)
    assert np.isin(s.train_index[s.train_index >= 0], p.train).all()
    assert np.isin(s.test_index[s.test_index >= 0], p.test).all()
    assert s.train.shape == (650, 5, 28, 28) and s.test.shape == (350, 5, 28, 28) and s.train.dtype == np.uint8
    other = im.build_image_split(train_chars[:100], test_chars, seed=5, images=images, labels=labels)
    assert (other.pools.classifier_eval == p.classifier_eval).all()
    again = im.build_image_split(train_chars, test_chars, seed=5, images=images, labels=labels)
    assert (again.train == s.train).all() and (again.test == s.test).all()


def test_validation_sequences_get_their_own_pool_in_proportion(mnist):
    """With validation sequences apart, a val pool is cut from the train share in proportion to them (at
    least 5% of the pool), disjoint from every other pool; the classifier's pools do not move."""
    images, labels = mnist
    rng = np.random.default_rng(0)
    train_chars, val_chars = rng.integers(0, 14, (585, 5)), rng.integers(0, 14, (65, 5))
    test_chars = rng.integers(0, 14, (350, 5))
    s = im.build_image_split(train_chars, test_chars, val_chars=val_chars, seed=5, images=images, labels=labels)
    p = s.pools
    assert (len(p.test), len(p.classifier_eval), len(p.train) + len(p.val)) == (2800, 2000, 5200)
    assert abs(len(p.val) - 520) <= 10  # 10% of the fitted sequences -> 10% of their share (rounded per class)
    for a, b in ((p.val, p.train), (p.val, p.test), (p.val, p.classifier_eval), (p.train, p.test)):
        assert len(np.intersect1d(a, b)) == 0
    assert np.isin(s.val_index[s.val_index >= 0], p.val).all() and s.val.shape == (65, 5, 28, 28)
    assert np.isin(s.train_index[s.train_index >= 0], p.train).all()
    shared = im.build_image_split(np.concatenate([train_chars, val_chars]), test_chars, seed=5, images=images,
                                  labels=labels)
    assert (shared.pools.classifier_eval == p.classifier_eval).all()
    assert np.array_equal(shared.pools.classifier_train, p.classifier_train)
    small = im.split_mnist_pool(labels, 1000, 1000, seed=5, n_val=10)
    assert abs(len(small.val) - 500) <= 10  # the 5% minimum


def test_build_time_20000_sequences(mnist):
    """Prints how long rendering 20,000 x 5 images takes (no timed assertion)."""
    images, labels = mnist
    a = np.arange(100).repeat(100)
    b = np.tile(np.arange(100), 100)
    strings = [f"{x}{op}{y}".ljust(5) for op in "+-" for x, y in zip(a, b)]
    chars = im.to_ids(strings)
    split = len(chars) // 2
    im.build_image_split(chars[:split], chars[split:], seed=0, images=images, labels=labels)  # warm up
    start = time.perf_counter()
    s = im.build_image_split(chars[:split], chars[split:], seed=0, images=images, labels=labels)
    elapsed = time.perf_counter() - start
    renders = []
    for seed in (0, 1):  # the first call also page-faults 78 MB of fresh memory
        out = None  # free the previous result so the repeat can reuse its memory
        start = time.perf_counter()
        out = im.render_sequences(chars, images, labels, np.random.default_rng(seed))
        renders.append(time.perf_counter() - start)
    print(f"\nbuild_image_split 20,000 x 5 x 28 x 28: {elapsed * 1000:.0f} ms; render_sequences alone: "
          f"{renders[0] * 1000:.0f} ms first call, {renders[1] * 1000:.0f} ms repeated")
    assert out.shape == (20000, 5, 28, 28) and len(s.train) + len(s.test) == 20000
