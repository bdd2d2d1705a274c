"""Image-family torch models and the answer-reading digit classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mathtune.trainables.arith import classifier as clf
from mathtune.trainables.arith.img_models import IMG2TEXT_SEED, TEXT2IMG_SEED, Img2TextModel, Text2ImgModel
from mathtune.trainables.arith.mnist import IMAGES_FILE, load_mnist

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def mnist():
    if not (MNIST_DIR / f"{IMAGES_FILE}.gz").is_file():
        pytest.skip(f"real MNIST not found in {MNIST_DIR} (see shared/data/PROVENANCE.md)")
    return load_mnist(MNIST_DIR)


@pytest.fixture
def one_thread():
    """Tiny models run faster and more repeatably on one thread on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("ops, answer_len", [("+-", 3), ("*", 5)])
def test_img2text_seed_defaults_forward_shapes(ops, answer_len):
    """Seed architectures map (B, 5, 28, 28) uint8 images to (B, answer_len, vocab) logits."""
    torch.manual_seed(0)
    model = Img2TextModel(answer_len, 14, **IMG2TEXT_SEED[ops]).eval()
    x = torch.randint(0, 256, (2, 5, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, answer_len, 14) and out.dtype == torch.float32
        assert torch.allclose(out, model(x.float() / 255.0), atol=1e-5)
    convs = [m for m in model.images.conv if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == IMG2TEXT_SEED[ops]["filters"]
    assert [c.kernel_size[0] for c in convs] == IMG2TEXT_SEED[ops]["kernel"]
    assert model.images.dense.out_features == IMG2TEXT_SEED[ops]["dense_units"]
    assert model.decoder.hidden_size == IMG2TEXT_SEED[ops]["decoder_hidden"]


def test_img2text_options():
    """An int filters/kernel repeats per block; extra layers stack the encoder; bad lists are refused."""
    model = Img2TextModel(3, 14, filters=16, kernel=5, conv_blocks=2, dense_units=20, hidden=24, extra_layers=2)
    assert [m.out_channels for m in model.images.conv if isinstance(m, torch.nn.Conv2d)] == [16, 16]
    assert model.encoder.num_layers == 3 and model.decoder.hidden_size == 24
    assert model(torch.rand(3, 5, 28, 28)).shape == (3, 3, 14)
    with pytest.raises(ValueError):
        Img2TextModel(3, 14, filters=[8, 16], kernel=[3, 3, 3])
    with pytest.raises(ValueError):
        Img2TextModel(3, 14, filters=[8, 8, 8, 8])


def test_img2text_batch_norm_option():
    """batch_norm puts a BatchNorm2d after each (bias-free) conv; the seed default has none."""
    plain = Img2TextModel(3, 14, filters=8, conv_blocks=2, dense_units=12, hidden=16)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    model = Img2TextModel(3, 14, filters=8, conv_blocks=2, dense_units=12, hidden=16, batch_norm=True)
    convs = [m for m in model.images.conv if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.images.conv if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 2 and all(c.bias is None for c in convs)
    x = torch.rand(4, 5, 28, 28)
    model.train()(x)
    assert norms[0].num_batches_tracked.item() == 1  # statistics come from all 4 x 5 images of the batch
    assert model.eval()(x).shape == (4, 3, 14)


def test_img2text_aux_head_reads_each_image_alone():
    """aux_vocab adds a per-image head: with_aux returns (answer logits, per-image logits), the answer logits
    being the plain forward's; each image's logits depend on that image alone; no head, no with_aux."""
    torch.manual_seed(0)
    model = Img2TextModel(3, 14, filters=8, dense_units=12, hidden=16, aux_vocab=14).eval()
    x = torch.rand(2, 5, 28, 28)
    logits, image_logits = model(x, with_aux=True)
    assert logits.shape == (2, 3, 14) and image_logits.shape == (2, 5, 14)
    assert torch.allclose(logits, model(x), atol=1e-6)
    changed = x.clone()
    changed[0, 1] = 0.0
    _, after = model(changed, with_aux=True)
    keep = [0, 2, 3, 4]
    assert torch.allclose(after[0, keep], image_logits[0, keep], atol=1e-6) and torch.allclose(after[1], image_logits[1], atol=1e-6)
    assert (after[0, 1] - image_logits[0, 1]).abs().max() > 1e-4
    plain = Img2TextModel(3, 14, filters=8, dense_units=12, hidden=16)
    assert plain.aux is None
    with pytest.raises(ValueError, match="aux_vocab"):
        plain(x, with_aux=True)


@pytest.mark.parametrize("feed, encoder_in", [("concat", 12 + 14), ("only", 14)])
def test_img2text_aux_feed_gives_the_encoder_the_heads_reading(feed, encoder_in):
    """aux_feed: the encoder reads the head's character probabilities (beside the dense features, or alone),
    so the answer depends on the head; it needs a head and a known mode."""
    torch.manual_seed(0)
    model = Img2TextModel(3, 14, filters=8, dense_units=12, hidden=16, aux_vocab=14, aux_feed=feed).eval()
    assert model.encoder.input_size == encoder_in
    x = torch.rand(2, 5, 28, 28)
    logits, image_logits = model(x, with_aux=True)
    assert image_logits.shape == (2, 5, 14) and torch.allclose(logits, model(x), atol=1e-6)
    with torch.no_grad():
        model.aux.bias[3] += 50.0  # every image now reads as character 3
    assert (model(x) - logits).abs().max() > 1e-4
    if feed == "only":  # the reading is all the encoder sees: any two images now give the same answer
        assert torch.allclose(model(x), model(torch.rand(2, 5, 28, 28)), atol=1e-5)
    with pytest.raises(ValueError, match="aux_vocab"):
        Img2TextModel(3, 14, filters=8, dense_units=12, hidden=16, aux_feed=feed)
    with pytest.raises(ValueError, match="aux_feed"):
        Img2TextModel(3, 14, filters=8, dense_units=12, hidden=16, aux_vocab=14, aux_feed="both")


@pytest.mark.parametrize("answer_len, embed_dim", [(3, 0), (5, 16)])
def test_text2img_seed_defaults_forward_shapes(answer_len, embed_dim):
    """Seed text2img maps (B, 5) ids to (B, answer_len, 28, 28) images in [0, 1]; logits=True skips the sigmoid."""
    torch.manual_seed(0)
    model = Text2ImgModel(answer_len, 14, embed_dim=embed_dim, **TEXT2IMG_SEED).eval()
    x = torch.randint(0, 14, (4, 5))
    with torch.no_grad():
        out = model(x)
        logits = model(x, logits=True)
    assert out.shape == (4, answer_len, 28, 28) and 0.0 <= out.min() and out.max() <= 1.0
    assert torch.allclose(torch.sigmoid(logits), out, atol=1e-6)
    assert model.encoder.hidden_size == 512 and model.decoder.hidden_size == 256


def test_img2text_overfits_a_few_batches(one_thread):
    """A small img2text model lowers its loss on a fixed batch whose images encode the answer."""
    torch.manual_seed(0)
    model = Img2TextModel(3, 14, filters=8, dense_units=32, hidden=48, dropout=0.0)
    templates = torch.rand(14, 28, 28)  # one image per answer symbol
    y = torch.randint(0, 14, (16, 3))
    x = torch.zeros(16, 5, 28, 28)
    x[:, :3] = templates[y]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 14), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0]


def test_text2img_overfits_a_few_batches(one_thread):
    """A small text2img model lowers its pixel loss on a fixed batch."""
    torch.manual_seed(0)
    model = Text2ImgModel(3, 14, hidden=32, decoder_hidden=32)
    x = torch.randint(0, 14, (8, 5))
    target = (torch.rand(8, 3, 28, 28) > 0.7).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, logits=True), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


# ------------------------------------------------------------------------------------------- classifier
TINY = clf.ClassifierConfig(epochs=1, batch_size=64, synthetic_per_class=30)


def test_classifier_cache_roundtrip(mnist, tmp_path, monkeypatch, one_thread):
    """The second call loads the cached weights (no training); other data hash to another entry."""
    images, labels = mnist
    tr, ev = np.arange(0, 600), np.arange(9000, 9200)
    model, acc = clf.get_digit_classifier(images[tr], labels[tr], images[ev], labels[ev], tmp_path, config=TINY)
    assert not model.metrics["from_cache"] and 0.0 <= acc <= 1.0
    path = Path(model.metrics["cache_path"])
    assert path.is_file() and path.parent.parent == tmp_path
    assert not list(path.parent.glob("*.tmp"))
    assert "state_dict" in torch.load(path, weights_only=True)

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the cache holds this classifier")

    monkeypatch.setattr(clf, "_train_classifier", no_training)
    monkeypatch.setenv("MATHTUNE_CACHE", str(tmp_path))  # cache_dir=None falls back to the env var
    again, acc2 = clf.get_digit_classifier(images[tr], labels[tr], images[ev], labels[ev], config=TINY)
    assert again.metrics["from_cache"] and acc2 == acc
    probe = torch.rand(3, 2, 28, 28)
    assert (clf.read_digits(model, probe) == clf.read_digits(again, probe)).all()

    key = clf.cache_key(images[tr], labels[tr], TINY)
    assert Path(model.metrics["cache_path"]).stem == key
    assert clf.cache_key(images[tr + 1], labels[tr + 1], TINY) != key  # other data
    assert clf.cache_key(images[tr], labels[tr], clf.ClassifierConfig(epochs=2)) != key  # other hyperparameters
    with pytest.raises(AssertionError, match="trained although"):
        clf.get_digit_classifier(images[tr + 1], labels[tr + 1], images[ev], labels[ev], tmp_path, config=TINY)


def test_classifier_training_is_reproducible(mnist, one_thread):
    """Same data and seed give the same weights whatever the caller's RNG state, which stays untouched."""
    images, labels = mnist
    x, y = clf._with_synthetic(images[:400], labels[:400], 20, 0)
    torch.manual_seed(1)
    a = clf._train_classifier(x, y, TINY)
    after = torch.rand(1)
    torch.manual_seed(2)
    b = clf._train_classifier(x, y, TINY)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    torch.manual_seed(1)
    assert torch.equal(torch.rand(1), after)


def test_read_digits_shapes_and_decoding(mnist, tmp_path, one_thread):
    """read_digits gives (N, L) classes 0..11; classes decode to answer ids and strings."""
    images, labels = mnist
    model, _ = clf.get_digit_classifier(images[:300], labels[:300], images[300:400], labels[300:400], tmp_path,
                                        config=TINY)
    seqs = np.stack([images[:3], images[3:6]]).astype(np.float32) / 255.0  # (2, 3, 28, 28)
    classes = clf.read_digits(model, seqs)
    assert classes.shape == (2, 3) and classes.dtype == np.int64 and ((0 <= classes) & (classes < 12)).all()
    assert (clf.read_digits(model, (seqs * 255).astype(np.uint8)) == classes).all()
    assert clf.classes_to_strings(np.array([[3, 5, 11], [10, 9, 8]])) == ["35 ", "-98"]
    assert clf.classes_to_ids(np.array([[3, 10, 11]])).tolist() == [[3, 11, 13]]


@pytest.mark.slow
def test_full_classifier_reads_held_apart_digits(mnist, tmp_path, request, one_thread):
    """Slow: the real classifier reaches >= 98% on the held-apart pool and reads minus and blanks."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: trains the real digit classifier (~1-2 min); run with -m slow")
    from mathtune.trainables.arith.images import draw_glyphs, split_mnist_pool

    images, labels = mnist
    pools = split_mnist_pool(labels, 13000, 7000, seed=0)
    model, acc = clf.classifier_for_pools(images, labels, pools, tmp_path, verbose=True)
    print(f"\ndigit classifier: {acc:.4f} on {len(pools.classifier_eval)} held-apart digits, "
          f"minus/blank {model.metrics['eval_minus_blank_accuracy']:.4f}, "
          f"trained in {model.metrics['train_seconds']:.0f}s "
          f"on {torch.get_num_threads()} threads")
    assert acc >= 0.98 and model.metrics["eval_minus_blank_accuracy"] >= 0.99
    ev = pools.classifier_eval
    answer = np.stack([draw_glyphs("-", 1, np.random.default_rng(9))[0], images[ev[labels[ev] == 4][0]],
                       np.zeros((28, 28), np.uint8)])[None].astype(np.float32) / 255.0
    assert clf.classes_to_strings(clf.read_digits(model, answer)) == ["-4 "]

