"""arith-img2text and arith-text2img on real MNIST: data, learning, the readable metric, caching, searches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mathtune.analysis import load_trials
from mathtune.analysis.plots import save_figure

from mathtune.search import SearchOptions, run_search
from mathtune.spaces import load_space
from mathtune.trainables import get_family, train
from mathtune.trainables.base import ConfigError
from mathtune.trainables.arith.data import ALPHABET, build_arith
from mathtune.trainables.arith.image_family import shift_images, warp_images
from mathtune.trainables.arith.img_models import IMG2TEXT_SEED, TEXT2IMG_SEED
from mathtune.trainables.arith.mnist import IMAGES_FILE, load_mnist
from mathtune.trainables.arith.views import grid_view

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
CONFIGS = Path(__file__).resolve().parents[1] / "trainables" / "configs"
HAVE_MNIST = (MNIST_DIR / f"{IMAGES_FILE}.gz").is_file()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"real MNIST not found in {MNIST_DIR} "
                                                        f"(see shared/data/PROVENANCE.md)")

# Tiny but real: the shipped families shrunk (few queries, narrow layers, a one-epoch digit classifier).
TINY_I2T = {"limit": 256, "filters": 8, "dense_units": 16, "hidden": 32, "decoder_hidden": 32, "batch_size": 32,
            "lr": 5e-3, "epochs": 3, "threads": 1, "mnist_dir": str(MNIST_DIR)}
TINY_T2I = {"limit": 256, "hidden": 32, "decoder_hidden": 32, "proj_channels": 8, "up_channels": 8,
            "batch_size": 32, "lr": 5e-3, "epochs": 3, "threads": 1, "classifier_epochs": 1,
            "mnist_dir": str(MNIST_DIR)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models (and the classifier trained in build_data) run on one thread on the shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A fresh classifier cache for this module, through $MATHTUNE_CACHE (as a user would set it)."""
    path = tmp_path_factory.mktemp("mathtune-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MATHTUNE_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def i2t():
    if not HAVE_MNIST:
        pytest.skip(f"real MNIST not found in {MNIST_DIR} (see shared/data/PROVENANCE.md)")
    fam = get_family("arith-img2text")
    cfg = fam.make_config(TINY_I2T)
    return fam, cfg, fam.build_data(cfg)


@pytest.fixture(scope="module")
def t2i(cache_dir):
    if not HAVE_MNIST:
        pytest.skip(f"real MNIST not found in {MNIST_DIR} (see shared/data/PROVENANCE.md)")
    fam = get_family("arith-text2img")
    cfg = fam.make_config(TINY_T2I)
    return fam, cfg, fam.build_data(cfg)


# ------------------------------------------------------------------------------------------- config
def test_zero_means_the_seed_architecture_of_the_operator_set():
    """Defaults resolve to the seed's model per operator set; explicit values win."""
    fam = get_family("arith-img2text")
    for ops in ("+-", "*"):
        kw = fam.model_kwargs(fam.make_config({"ops": ops}))
        seed = IMG2TEXT_SEED[ops]
        assert {k: kw[k] for k in seed} == seed and kw["conv_blocks"] == len(seed["filters"])
    kw = fam.model_kwargs(fam.make_config({"conv_blocks": 2, "filters": 16, "kernel": 5}))
    assert kw["filters"] == [16, 16] and kw["kernel"] == [5, 3] and kw["dense_units"] == 80
    assert kw["batch_norm"] is False and fam.model_kwargs(fam.make_config({"batch_norm": True}))["batch_norm"] is True
    kw = fam.model_kwargs(fam.make_config({"ops": "*", "conv_blocks": 2, "filters_next": 32}))
    assert kw["filters"] == [256, 32] and kw["kernel"] == [5, 3] and kw["decoder_hidden"] == 128
    t2i = get_family("arith-text2img").make_config({})
    assert {k: t2i[k] for k in TEXT2IMG_SEED} == TEXT2IMG_SEED and (t2i["proj_channels"], t2i["up_channels"]) == (128, 64)
    for name in ("arith-img2text", "arith-text2img"):
        f = get_family(name)
        assert f.metric == "val_exact_match" and f.mode == "max" and "mnist_dir" in f.data_params


def test_shift_images_moves_pixels_and_keeps_blanks():
    """Augmentation moves each image by at most max_shift pixels; blank stays blank; 0 is the identity."""
    x = torch.zeros(64, 2, 28, 28, dtype=torch.uint8)
    x[:, 0, 14, 14] = 255
    out = shift_images(x, 2, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert (out[:, 1] == 0).all() and (out[:, 0].flatten(1).sum(1) == 255).all()
    ys, xs = torch.nonzero(out[:, 0], as_tuple=True)[1:]
    assert ((ys - 14).abs() <= 2).all() and ((xs - 14).abs() <= 2).all() and len(set(zip(ys.tolist(), xs.tolist()))) > 5
    assert shift_images(x, 0, torch.Generator()) is x


def _bar_angles(images: torch.Tensor) -> np.ndarray:
    """The principal-axis angle (degrees, image rows downwards) of each (28, 28) image's intensity."""
    w = images.double().flatten(1)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    ys, xs = ys.flatten().double(), xs.flatten().double()
    mass = w.sum(1)
    my, mx = (w * ys).sum(1) / mass, (w * xs).sum(1) / mass
    cyy = (w * (ys - my[:, None]) ** 2).sum(1) / mass
    cxx = (w * (xs - mx[:, None]) ** 2).sum(1) / mass
    cxy = (w * (ys - my[:, None]) * (xs - mx[:, None])).sum(1) / mass
    return np.degrees(0.5 * torch.atan2(2 * cxy, cxx - cyy).numpy())


def test_warp_images_rotates_and_scales_within_bounds():
    """Rotation stays within +-max_degrees, scaling changes ink by about s^2; blanks stay blank; 0 is the
    identity; the same generator seed gives the same images."""
    x = torch.zeros(200, 2, 28, 28, dtype=torch.uint8)
    x[:, 0, 13:15, 5:23] = 255  # a horizontal bar through the centre
    rotated = warp_images(x, 30.0, 0.0, torch.Generator().manual_seed(0))
    assert rotated.dtype == torch.uint8 and rotated.shape == x.shape and (rotated[:, 1] == 0).all()
    angles = _bar_angles(rotated[:, 0])
    assert np.abs(angles).max() <= 31.0 and np.abs(angles).max() >= 20.0 and (angles > 5).any() and (angles < -5).any()
    assert torch.equal(rotated, warp_images(x, 30.0, 0.0, torch.Generator().manual_seed(0)))
    scaled = warp_images(x, 0.0, 0.3, torch.Generator().manual_seed(1))
    ratio = scaled[:, 0].double().flatten(1).sum(1) / x[:, 0].double().flatten(1).sum(1)
    assert ratio.min() >= 0.7 ** 2 * 0.85 and ratio.max() <= 1.3 ** 2 * 1.15 and ratio.max() - ratio.min() > 0.5
    assert np.abs(_bar_angles(scaled[:, 0])).max() < 1.0
    assert warp_images(x, 0.0, 0.0, torch.Generator()) is x


# ------------------------------------------------------------------------------------------- data
def _check_pools(data, images_mnist):
    """Training, validation and test queries use digit images of three disjoint pools, none of them the
    classifier's evaluation pool; each image is the MNIST image its index names."""
    pools = data.pools

    def used(rows):
        idx = data.image_index[rows]
        return set(idx[idx >= 0].tolist())

    train_used, val_used, test_used = used(data.train_index), used(data.val_index), used(data.test_index)
    assert train_used and val_used and test_used
    assert not train_used & val_used and not train_used & test_used and not val_used & test_used
    assert train_used <= set(pools.train.tolist()) and test_used <= set(pools.test.tolist())
    assert val_used <= set(pools.val.tolist())
    assert not set(pools.val.tolist()) & (set(pools.train.tolist()) | set(pools.test.tolist()))
    assert not (train_used | val_used | test_used) & set(pools.classifier_eval.tolist())
    assert set(pools.classifier_train.tolist()) == set(pools.train.tolist()) | set(pools.val.tolist()) | set(
        pools.test.tolist())
    digit = data.image_index >= 0
    assert np.array_equal(data.images[digit], images_mnist[data.image_index[digit]])


@needs_mnist
def test_img2text_data_is_deterministic_disjoint_and_follows_the_text_split(i2t):
    """Queries as (N, 5, 28, 28) uint8; the text family's split; test images never seen in training."""
    fam, cfg, data = i2t
    again = fam.build_data(cfg)
    assert data.images.shape == (len(data.x), 5, 28, 28) and data.images.dtype == np.uint8
    assert data.y.shape == (len(data.x), 3)
    assert np.array_equal(data.images, again.images) and np.array_equal(data.x, again.x)
    other = fam.build_data(cfg.replace(data_seed=1))
    assert not np.array_equal(other.source_index, data.source_index) or not np.array_equal(other.images, data.images)
    text = build_arith("+-", cfg.split, cfg.data_seed, cfg.val_fraction, limit=cfg.limit)
    for part in ("train", "val", "test"):
        assert np.array_equal(data.source_index[data.part(part)], text.part(part))
    assert np.array_equal(data.x, text.x[data.source_index]) and np.array_equal(data.y, text.y[data.source_index])
    assert len(data.train_index) == 256
    images, _ = load_mnist(MNIST_DIR)
    _check_pools(data, images)
    assert ((data.image_index >= 0) == (data.x < 10)).all()  # a digit image exactly where the query has a digit
    assert "disjoint pools" in fam.describe_data(data) and str(MNIST_DIR) in fam.describe_data(data)
    assert " / val " in fam.describe_data(data)
    shared = fam.build_data(cfg.replace(val_pool=False))  # the earlier datasets: validation from the train pool
    assert len(shared.pools.val) == 0 and np.array_equal(shared.x, data.x)
    val_idx, train_pool = shared.image_index[shared.val_index], set(shared.pools.train.tolist())
    assert set(val_idx[val_idx >= 0].tolist()) <= train_pool


@needs_mnist
def test_text2img_data_renders_answers_and_carries_the_classifier(t2i):
    """Answers as (N, 3, 28, 28) uint8 from disjoint pools, plus the classifier's weights and accuracy."""
    fam, cfg, data = t2i
    assert data.images.shape == (len(data.x), 3, 28, 28) and data.render == "answers"
    assert ((data.image_index >= 0) == (data.y < 10)).all()
    images, _ = load_mnist(MNIST_DIR)
    _check_pools(data, images)
    clf = data.classifier
    assert 0.5 < clf["accuracy"] <= 1.0 and clf["metrics"]["n_eval"] == len(data.pools.classifier_eval)
    assert all(isinstance(v, np.ndarray) for v in clf["state_dict"].values())


# ------------------------------------------------------------------------------------------- learning
@needs_mnist
def test_img2text_loop_learns_on_tiny_data(i2t):
    """Three epochs of a tiny CNN+LSTM lower the loss; metrics are text2text's names, in range."""
    fam, cfg, data = i2t
    result = train(fam, cfg, data=data, progress=None)
    hist = result["history"]
    assert hist[-1]["train_loss"] < 0.85 * hist[0]["train_loss"]
    for key in ("val_exact_match", "val_char_acc", "test_exact_match", "test_char_acc", "val_loss"):
        assert 0.0 <= hist[-1][key] < 10.0
    assert hist[-1]["val_char_acc"] > 0.3  # above the all-blank answer (about 1/3 of positions are blank)
    assert "test_read_acc" not in hist[-1]  # no per-image head, no reading accuracy
    # the same config trains to the same numbers (augmentation draws from the seeded batch generator)
    again = train(fam, cfg.replace(epochs=1), data=data, progress=None)["history"][0]
    assert again["train_loss"] == hist[0]["train_loss"] and again["val_loss"] == hist[0]["val_loss"]


@needs_mnist
def test_img2text_takes_the_text2text_star_recipe_reverse_decay_and_keras_init(i2t):
    """reverse renders the reversed query (its images in reverse order) and trains on the reversed answer,
    predictions read forwards again; weight_decay switches to AdamW; init=keras re-initialises the LSTMs and
    dense layers as arith-text2text does; the defaults leave the family as it was."""
    fam, cfg, data = i2t
    assert (cfg.reverse, cfg.weight_decay, cfg.init) == ("none", 0.0, "torch")
    rev_cfg = fam.make_config({**TINY_I2T, "reverse": "both", "weight_decay": 1.0, "init": "keras", "epochs": 2})
    rev = fam.build_data(rev_cfg)
    assert rev.reverse == "both" and rev.queries == data.queries and rev.answers == data.answers
    assert np.array_equal(rev.x, data.x[:, ::-1]) and np.array_equal(rev.y, data.y[:, ::-1])
    assert np.array_equal(rev.image_index >= 0, data.image_index[:, ::-1] >= 0)
    # each image shows the character at its (reversed) position: the pools' labels agree with the text
    _, labels = load_mnist(MNIST_DIR)
    digit = rev.image_index >= 0
    assert [ALPHABET[c] for c in rev.x[digit]] == [str(d) for d in labels[rev.image_index[digit]]]
    assert fam.data_key(rev_cfg) != fam.data_key(cfg)

    plain_opt = fam.optimizer(fam.build_model(cfg, data), cfg)
    assert type(plain_opt) is torch.optim.Adam and plain_opt.defaults["eps"] == 1e-8
    model = fam.build_model(rev_cfg, rev)
    opt = fam.optimizer(model, rev_cfg)
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 1.0 and opt.defaults["eps"] == 1e-7
    bias = model.encoder.bias_ih_l0
    h = bias.shape[0] // 4
    assert torch.all(bias[h:2 * h] == 1.0) and torch.all(bias[:h] == 0.0)  # Keras's forget-gate bias
    assert torch.all(model.out.bias == 0.0)
    torch_bias = fam.build_model(cfg, data).encoder.bias_ih_l0
    assert not torch.all(torch_bias[h:2 * h] == 1.0)

    result = train(fam, rev_cfg, data=rev, progress=None)
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    preds = fam.predict(result["model"], rev, "test", torch.device("cpu"))
    assert len(preds) == len(rev.part("test"))
    # the reported exact match is the share of test answers predict() gets right, read forwards
    right = np.mean([p == rev.answers[i].strip() for p, i in zip(preds, rev.part("test"))])
    assert right == pytest.approx(result["history"][-1]["test_exact_match"], abs=1e-9)


@needs_mnist
def test_img2text_aux_weight_supervises_each_image_with_its_query_character(i2t):
    """aux_weight: training batches also carry the characters their images render; the loss adds the
    weighted per-image cross-entropy; aux_weight 0 leaves batches as they were (same draws, so shipped
    figures stand); training with it teaches the head to read digits it was never shown."""
    fam, cfg, data = i2t
    cpu = torch.device("cpu")
    aux_cfg = cfg.replace(aux_weight=0.5)
    plain = next(fam.batches(data, cfg, torch.Generator().manual_seed(3), cpu))
    x, y, chars = next(fam.batches(data, aux_cfg, torch.Generator().manual_seed(3), cpu))
    assert len(plain) == 2 and torch.equal(plain[0], x) and torch.equal(plain[1], y)
    rows = data.train_index[torch.randperm(len(data.train_index), generator=torch.Generator().manual_seed(3))[:len(y)]]
    assert torch.equal(x, torch.from_numpy(data.images[rows])) and torch.equal(chars, torch.from_numpy(data.x[rows]))
    shifted = cfg.replace(augment_shift=2)
    with_aux = shifted.replace(aux_weight=1.0)
    assert torch.equal(next(fam.batches(data, shifted, torch.Generator().manual_seed(3), cpu))[0],
                       next(fam.batches(data, with_aux, torch.Generator().manual_seed(3), cpu))[0])

    model = fam.build_model(aux_cfg, data).eval()
    logits, image_logits = model(x, with_aux=True)
    answer = torch.nn.functional.cross_entropy(logits.reshape(-1, 14), y.reshape(-1))
    image = torch.nn.functional.cross_entropy(image_logits.reshape(-1, 14), chars.reshape(-1))
    assert torch.allclose(fam.loss(model, (x, y, chars), aux_cfg), answer + 0.5 * image)
    assert torch.allclose(fam.loss(model, (x, y), aux_cfg), answer)
    assert fam.build_model(cfg, data).aux is None
    fed = fam.build_model(cfg.replace(aux_feed="concat"), data)  # a head trained through the encoder alone
    assert fed.aux is not None and fed.encoder.input_size == cfg.dense_units + 14
    with pytest.raises(ConfigError, match="aux_feed"):
        fam.make_config({**TINY_I2T, "aux_feed": "yes"})

    # the head learns to read digits of test images, which come from the disjoint test pool
    test_rows = data.part("test")
    digits = data.image_index[test_rows] >= 0
    images, truth = torch.from_numpy(data.images[test_rows]), data.x[test_rows][digits]
    untrained = (model(images, with_aux=True)[1].argmax(-1).numpy()[digits] == truth).mean()
    trained = train(fam, cfg.replace(aux_weight=1.0, epochs=3), data=data, progress=None)
    read = (trained["model"].eval()(images, with_aux=True)[1].argmax(-1).numpy()[digits] == truth).mean()
    assert read > max(0.5, untrained + 0.3), (untrained, read)
    last = trained["history"][-1]
    assert last["train_loss"] < trained["history"][0]["train_loss"]
    assert last["test_read_acc"] == pytest.approx(read, abs=1e-9) and 0.5 < last["val_read_acc"] <= 1.0


@needs_mnist
def test_text2img_loop_learns_and_reports_pixel_and_readable_metrics(t2i):
    """Pixel loss falls; pixel accuracies, readable exact match and the classifier's accuracy are reported."""
    fam, cfg, data = t2i
    result = train(fam, cfg, data=data, progress=None)
    first, last = result["history"][0], result["history"][-1]
    assert last["val_pixel_loss"] < first["val_pixel_loss"] and last["train_loss"] < first["train_loss"]
    for part in ("val", "test"):
        assert 0.7 < last[f"{part}_pixel_acc"] <= 1.0
        assert last[f"{part}_pixel_acc_exact"] <= last[f"{part}_pixel_acc"]
        assert 0.0 <= last[f"{part}_exact_match"] <= last[f"{part}_char_acc"] <= 1.0
    assert all(h["classifier_acc"] == data.classifier["accuracy"] for h in result["history"])


@needs_mnist
def test_text2img_aux_head_reads_answer_characters_and_leaves_images_alone(t2i):
    """`aux_weight` adds a character head on the decoder state, trained on the answer text beside the pixel
    loss; the images come from the decoder state alone, so the head changes nothing at evaluation."""
    fam, cfg, data = t2i
    plain = fam.build_model(cfg, data)
    assert plain.aux is None
    acfg = cfg.replace(aux_weight=1.0, epochs=4)
    torch.manual_seed(0)
    model = fam.build_model(acfg, data)
    assert model.aux is not None and model.aux.out_features == data.vocab_size
    batch = next(iter(fam.batches(data, acfg, torch.Generator().manual_seed(0), torch.device("cpu"))))
    model.train()
    with_aux = float(fam.loss(model, batch, acfg))
    pixels = float(fam.loss(model, batch, acfg.replace(aux_weight=0.0)))
    assert with_aux > pixels + 1.0  # an untrained head adds about log(vocab) of cross-entropy
    result = train(fam, acfg, data=data, progress=None)
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    model.eval()
    x = torch.from_numpy(data.x[:8])
    images, chars = model(x, with_aux=True)
    assert torch.equal(images, model(x)) and chars.shape == (8, data.answer_len, data.vocab_size)


class _TrueAnswers(torch.nn.Module):
    """A generator that returns the dataset's own answer images: the ceiling of every text2img metric."""

    def __init__(self, data, faint: float = 1.0):
        super().__init__()
        self.keys = {tuple(row): i for i, row in enumerate(data.x.tolist())}
        target = torch.from_numpy(data.images).float() / 255.0
        self.logits = torch.logit(target, eps=1e-6) * faint  # faint < 1: washed-out images, the same ink

    def forward(self, x, *, logits=False):
        rows = torch.tensor([self.keys[tuple(r)] for r in x.tolist()])
        out = self.logits[rows]
        return out if logits else torch.sigmoid(out)


@needs_mnist
def test_readable_metric_reads_true_answer_images(t2i):
    """Perfect images score pixel accuracy 1 and a readable exact match as high as the classifier reads."""
    fam, cfg, data = t2i
    metrics = fam.evaluate(_TrueAnswers(data), data, cfg, torch.device("cpu"))
    assert metrics["val_pixel_acc"] == 1.0 and metrics["test_pixel_acc"] == 1.0
    assert metrics["test_pixel_acc_exact"] < 1.0  # grey rims never count in the seed's Keras figure
    # a one-epoch classifier reads about 97% of digits; whole answers of up to three symbols mostly right
    assert metrics["val_exact_match"] > 0.8 and metrics["test_exact_match"] > 0.8
    assert metrics["test_char_acc"] >= metrics["test_exact_match"]
    preds = fam.predict(_TrueAnswers(data), data, "test", torch.device("cpu"))
    truth = [data.answers[i] for i in data.test_index]
    assert np.mean([p == t for p, t in zip(preds, truth)]) == pytest.approx(metrics["test_exact_match"])


@needs_mnist
def test_sharpen_redraws_faint_images_without_changing_pixel_figures(t2i):
    """`sharpen` is the output temperature: washed-out images (logits x 0.25) drawn at sharpen 4 are the true
    images again, so they read as well as the true ones; binarised pixel accuracy and the pixel loss, which
    compare the trained logits, are the same at every temperature."""
    fam, cfg, data = t2i
    cpu = torch.device("cpu")
    true = fam.evaluate(_TrueAnswers(data), data, cfg, cpu)
    faint = _TrueAnswers(data, faint=0.25)
    plain = fam.evaluate(faint, data, cfg.replace(sharpen=1.0), cpu)
    sharp = fam.evaluate(faint, data, cfg.replace(sharpen=4.0), cpu)
    for part in ("val", "test"):
        assert sharp[f"{part}_exact_match"] == true[f"{part}_exact_match"]
        assert sharp[f"{part}_char_acc"] == true[f"{part}_char_acc"]
        for key in ("pixel_acc", "pixel_acc_exact", "pixel_loss"):
            assert sharp[f"{part}_{key}"] == plain[f"{part}_{key}"]
    model = fam.build_model(cfg.replace(sharpen=2.0), data).eval()
    x = torch.from_numpy(data.x[:4])
    with torch.no_grad():
        assert torch.allclose(model(x), torch.sigmoid(2.0 * model(x, logits=True)))
        assert model.sharpen == 2.0 and fam.build_model(cfg, data).sharpen == 1.0


@needs_mnist
def test_classifier_is_trained_once_then_read_from_cache(t2i, cache_dir):
    """Another split of the same data seed reuses the cached classifier: same file, same weights, no training."""
    fam, cfg, data = t2i
    assert not data.classifier["metrics"]["from_cache"]  # the module's fresh cache: trained by the fixture
    assert Path(data.classifier["metrics"]["cache_path"]).parent.parent == cache_dir
    again = fam.build_data(cfg.replace(split=0.6))
    m = again.classifier["metrics"]
    assert m["from_cache"] and m["cache_path"] == data.classifier["metrics"]["cache_path"]
    assert again.classifier["accuracy"] == data.classifier["accuracy"]
    assert all(np.array_equal(again.classifier["state_dict"][k], v) for k, v in data.classifier["state_dict"].items())
    assert len(list(cache_dir.rglob("*.pt"))) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (channels-last + bfloat16 autocast)")
@needs_mnist
def test_gpu_epoch_with_amp(i2t, t2i):
    """On a GPU both families train an epoch under autocast and report finite metrics."""
    for fam, cfg, data in (i2t, t2i):
        result = train(fam, cfg.replace(epochs=1, device="cuda"), data=data, progress=None)
        assert np.isfinite(result["last"]["train_loss"]) and 0.0 <= result["last"]["val_exact_match"] <= 1.0


# ------------------------------------------------------------------------------------------- spaces and configs
@pytest.mark.parametrize("name, family, ops", [("arith-img2text-addsub", "arith-img2text", "+-"),
                                               ("arith-img2text-mul", "arith-img2text", "*"),
                                               ("arith-text2img-addsub", "arith-text2img", "+-"),
                                               ("arith-text2img-mul", "arith-text2img", "*")])
def test_shipped_image_spaces_load(name, family, ops):
    """Each space searches the issue's parameters, with split as a study factor and CPU-sized resources."""
    space = load_space(name)
    assert space.family == family and space.metric == "val_exact_match" and space.constants["ops"] == ops
    assert "split" in space.factors and space.resources.get("cpus", 0) >= 1
    wanted = {"hidden", "decoder_hidden", "extra_layers", "dropout", "lr", "batch_size"}
    if family == "arith-img2text":
        wanted |= {"conv_blocks", "filters", "kernel", "dense_units"}
    assert wanted <= set(space.params)
    for combo in space.factor_combos():
        for point in space.points_to_evaluate or [{}]:
            space.config(combo, {k: v for k, v in point.items() if k not in space.factors})


@pytest.mark.parametrize("family", ["arith-img2text", "arith-text2img"])
def test_shipped_best_config_is_a_train_config_with_its_figures(family):
    """trainables/configs/FAMILY-addsub.json: `mathtune train FAMILY --config FILE` input, figure and provenance."""
    path = CONFIGS / f"{family}-addsub.json"
    payload = json.loads(path.read_text())
    assert payload["family"] == family
    config = get_family(family).make_config(payload["config"], where=str(path))
    assert config["ops"] == "+-" and "threads" not in payload["config"]  # trains on the machine at hand
    assert all(e["threads"] >= 1 for run in payload["provenance"] for e in run)  # how the figure's runs trained
    assert payload["figure"]["epoch"] <= config["epochs"]
    assert 0.0 < payload["figure"]["test_exact_match"] <= 1.0
    assert payload["measured_on"] and payload["wall_time_s"] > 0


def test_campaign_spaces_start_from_the_reference_and_search_the_recipes():
    """The spaces a campaign searches start only from the reference reports' configurations (what a new user
    has), never from a hand-tuned shipped file, and search every setting the hand runs used."""
    shipped = [json.loads(p.read_text())["config"] for p in CONFIGS.glob("*.json")]
    recipes = {"arith-img2text-addsub": {"ema", "weight_decay", "decoder_hidden", "init", "reverse", "epochs"},
               "arith-text2text-mul": {"ema", "weight_decay", "decoder_hidden", "init", "reverse", "epochs"},
               "t2m-lstm": {"ema", "average_last", "label_smoothing", "dec_hidden", "epochs"},
               "t2m-attn": {"ema", "average_last", "label_smoothing", "dec_hidden", "attention_style", "epochs"},
               "t2m-glove": {"ema", "average_last", "label_smoothing", "dec_hidden", "attention_style", "epochs"}}
    for name, searched in recipes.items():
        space = load_space(name)
        assert searched <= set(space.params), (name, searched - set(space.params))
        for point in space.points_to_evaluate:
            assert not any(all(c.get(k) == v for k, v in point.items()) for c in shipped), (name, point)
    first = load_space("arith-img2text-addsub").points_to_evaluate[0]
    # the reference's +- model: one conv block, dropout 0.25, dense 80, LSTM 256, no extra layer, Adam 1e-3, batch 8
    assert {k: first[k] for k in ("conv_blocks", "dropout", "dense_units", "hidden", "extra_layers", "lr",
                                  "batch_size", "aux_weight")} == \
        {"conv_blocks": 1, "dropout": 0.25, "dense_units": 80, "hidden": 256, "extra_layers": 0, "lr": 0.001,
         "batch_size": 8, "aux_weight": 0.0}


# ------------------------------------------------------------------------------------------- searches
def _tiny_search(space: str, overrides: dict, storage: Path):
    return run_search(space, SearchOptions(num_samples=2, storage_path=str(storage), name="tiny", verbose=0,
                                           overrides=overrides, seed=0, dashboard=False))


@needs_mnist
def test_tiny_img2text_search_end_to_end(ray_session, tmp_path):
    """The shipped +- space, shrunk: two trials finish; best reports val and test exact match."""
    overrides = {**{k: v for k, v in TINY_I2T.items() if k != "lr"}, "epochs": 2, "conv_blocks": 1,
                 "filters_next": 8, "extra_layers": 0, "augment_shift": 1, "batch_size": 64}
    outcome = _tiny_search("arith-img2text-addsub", overrides, tmp_path)
    assert outcome.counts == {"TERMINATED": 2}
    (best,) = outcome.best.values()
    assert 0.0 <= best["val_exact_match"] <= 1.0 and 0.0 <= best["test_exact_match"] <= 1.0


@needs_mnist
def test_tiny_text2img_search_end_to_end(ray_session, tmp_path, t2i):
    """The shipped +- space, shrunk: two trials share one dataset with the cached classifier and finish."""
    overrides = {**{k: v for k, v in TINY_T2I.items() if k != "lr"}, "epochs": 2, "extra_layers": 0,
                 "embed_dim": 0, "batch_size": 64}
    outcome = _tiny_search("arith-text2img-addsub", overrides, tmp_path)
    assert outcome.counts == {"TERMINATED": 2}
    (best,) = outcome.best.values()
    assert 0.0 <= best["val_exact_match"] <= 1.0
    rows = [json.loads(line) for p in outcome.experiment_dir.glob("trial_*/result.json")
            for line in p.read_text().splitlines()]
    assert len(rows) == 4 and all(r["classifier_acc"] == t2i[2].classifier["accuracy"] for r in rows)
    assert all(0.0 < r["test_pixel_acc"] <= 1.0 for r in rows)
    # sharpen is decode-time: trials trained at 1, then each selected checkpoint was read at every value
    for trial in load_trials(outcome.experiment_dir):
        scored = trial.decoded()
        assert [s["setting"]["sharpen"] for s in scored["scored"]] == [1.0, 1.5, 2.0, 3.0]
        assert trial.config["sharpen"] == 1.0
        trained = trial.best("val_exact_match", decoded=False)
        assert scored["scored"][0]["val_exact_match"] == pytest.approx(trained["val_exact_match"])
        assert scored["best"]["val_exact_match"] == max(s["val_exact_match"] for s in scored["scored"])
    assert best["val_exact_match"] == max(t.decoded()["best"]["val_exact_match"]
                                          for t in load_trials(outcome.experiment_dir))


@needs_mnist
def test_report_grid_view_shows_generated_answers_and_what_is_read(t2i, tmp_path):
    """The report's generated-answers view, through the arith family hooks (generate, predict): a grid PNG of
    the true answer images, captioned with what the classifier reads; families without images get none."""
    fam, cfg, data = t2i
    assert fam.has_report_views() and fam.arithmetic_answers
    view = grid_view(fam, _TrueAnswers(data), data, torch.device("cpu"), name="t2i", title="tiny")
    assert view is not None and view.figures and view.figures[0].name == "t2i-generated"
    assert save_figure(view.figures[0].figure, tmp_path / "t2i-generated.png").is_file()
    assert "with what the digit classifier reads" in view.figures[0].caption
    t2t = get_family("arith-text2text")
    assert t2t.generate(None, None, "test", torch.device("cpu")) is None
    assert not get_family("replay-arith-text2text").has_report_views()
