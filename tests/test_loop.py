"""The shared training loop on the real arith-text2text config, shrunk."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mathtune.trainables import ConfigError, Family, get_family, load_checkpoint, train
from mathtune.trainables.checkpoints import load_trained
from mathtune.trainables.arith.data import as_written, decode, encode, fixed_width
from mathtune.trainables.arith.text2text import Seq2SeqLSTM
from mathtune.trainables.atomic import backup_of
from mathtune.trainables.loop import CheckpointError, averaged_model, eta_seconds, format_duration
from mathtune.trainables.metrics import is_better

FAM = get_family("arith-text2text")
TINY = {"limit": 512, "batch_size": 32, "hidden": 64, "decoder_hidden": 64, "threads": 1, "lr": 0.005}


def test_seed_model_shapes_and_defaults():
    cfg = FAM.make_config()
    assert (cfg.hidden, cfg.decoder_hidden, cfg.batch_size, cfg.epochs) == (256, 256, 8, 20)
    for extra in (0, 2):
        model = Seq2SeqLSTM(14, 3, hidden=32, extra_layers=extra, decoder_hidden=16)
        assert model.encoder.num_layers == 1 + extra
        assert model(torch.zeros(4, 5, dtype=torch.long)).shape == (4, 3, 14)


def test_default_init_is_keras_and_torch_init_is_kept_on_request():
    """The family's default model is initialised as the reference's Keras model (Glorot input and output
    weights, orthogonal recurrent weights, zero biases but the forget gate's 1, Adam epsilon 1e-7);
    ``init=torch`` keeps PyTorch's own initialisation."""
    data = FAM.build_data(FAM.make_config(TINY))
    cfg = FAM.make_config({**TINY, "extra_layers": 1})
    model = FAM.build_model(cfg, data)
    h = cfg.hidden
    for lstm in (model.encoder, model.decoder):
        for layer in range(lstm.num_layers):
            w_hh = getattr(lstm, f"weight_hh_l{layer}")
            assert torch.allclose(w_hh.T @ w_hh, torch.eye(w_hh.shape[1]), atol=1e-4)  # orthogonal columns
            w_ih = getattr(lstm, f"weight_ih_l{layer}")
            bound = (6 / (w_ih.shape[0] + w_ih.shape[1])) ** 0.5
            assert w_ih.abs().max() <= bound and w_ih.abs().max() > 0.9 * bound
            b = getattr(lstm, f"bias_ih_l{layer}")
            width = b.shape[0] // 4
            assert torch.equal(b[width:2 * width], torch.ones(width))
            assert not b[:width].any() and not b[2 * width:].any() and not getattr(lstm, f"bias_hh_l{layer}").any()
    assert not model.out.bias.any() and model.encoder.hidden_size == h
    assert FAM.optimizer(model, cfg).defaults["eps"] == 1e-7
    plain_cfg = FAM.make_config({**TINY, "init": "torch"})
    plain = FAM.build_model(plain_cfg, data)
    assert plain.encoder.bias_ih_l0.abs().min() > 0 and FAM.optimizer(plain, plain_cfg).defaults["eps"] == 1e-8
    with pytest.raises(ConfigError, match="init"):
        FAM.make_config({**TINY, "init": "glorot"})


def test_weight_decay_switches_to_decoupled_adamw_that_shrinks_unused_weights():
    """weight_decay 0 keeps the reference's plain Adam; above 0 AdamW decays every weight by lr x decay per
    step, even one whose gradient is zero."""
    data = FAM.build_data(FAM.make_config(TINY))
    plain_cfg = FAM.make_config(TINY)
    assert type(FAM.optimizer(FAM.build_model(plain_cfg, data), plain_cfg)) is torch.optim.Adam
    cfg = FAM.make_config({**TINY, "weight_decay": 0.5})
    model = FAM.build_model(cfg, data)
    opt = FAM.optimizer(model, cfg)
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 0.5
    before = model.out.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(model.out.weight, before * (1 - cfg.lr * 0.5))
    with pytest.raises(ConfigError, match="weight_decay"):
        FAM.make_config({**TINY, "weight_decay": -1})


def test_luong_attention_reads_every_query_character_and_trains():
    """attention=luong adds a scoring and a combining layer after the decoder (Keras-initialised like the rest);
    each answer step's weights over the query characters sum to 1, and the shrunk config still learns."""
    data = FAM.build_data(FAM.make_config(TINY))
    cfg = FAM.make_config({**TINY, "attention": "luong", "ops": "*"})
    model = FAM.build_model(cfg, FAM.build_data(cfg))
    assert FAM.build_model(FAM.make_config(TINY), data).attention is None  # the reference's model by default
    att = model.attention
    assert not att.combine.bias.any() and att.score.weight.shape == (cfg.decoder_hidden, cfg.hidden)
    x = torch.from_numpy(data.x[:8])
    encoded, _ = model.encoder(model.encode_inputs(x))
    decoded = torch.randn(8, model.answer_len, cfg.decoder_hidden)
    weights = att.weights(decoded, encoded)
    assert weights.shape == (8, model.answer_len, x.shape[1])
    assert torch.allclose(weights.sum(-1), torch.ones(8, model.answer_len))
    result = train(FAM, FAM.make_config({**TINY, "attention": "luong", "epochs": 4}), progress=None)
    first, last = result["history"][0], result["history"][-1]
    assert last["train_loss"] < 0.8 * first["train_loss"]
    with pytest.raises(ConfigError, match="attention"):
        FAM.make_config({**TINY, "attention": "bahdanau"})


def test_fixed_width_digits_keep_place_values_and_are_scored_as_the_reference_writes_answers():
    """digits=fixed writes operands and answers with leading zeros (reversed: the units digit always first);
    metrics and predictions read answers back as written, so they mean what they mean without it."""
    cfg = FAM.make_config({**TINY, "ops": "*", "reverse": "both", "digits": "fixed", "epochs": 3})
    data = FAM.build_data(cfg)
    plain = FAM.build_data(FAM.make_config({**TINY, "ops": "*"}))
    i = next(k for k, q in enumerate(data.queries) if q == "7*5")
    assert decode(data.x[i]) == "50*70" and decode(data.y[i]) == "53000"  # 07*05 -> 00035, both reversed
    assert data.queries == plain.queries and np.array_equal(data.y_written, plain.y)
    assert np.array_equal(data.written(data.y), plain.y) and FAM.data_key(cfg) != FAM.data_key(FAM.make_config(TINY))
    assert fixed_width("-5", 3) == "-05" and as_written("-05") == "-5" and as_written("000") == "0"

    result = train(FAM, cfg, progress=None)
    model = result["model"].eval()
    last = result["history"][-1]
    preds = FAM.predict(model, data, "test", torch.device("cpu"))
    truth = [data.answers[k] for k in data.part("test")]
    assert last["test_exact_match"] == pytest.approx(np.mean([p == t for p, t in zip(preds, truth)]))
    # per character: the answer as the reference writes it (right-padded), whatever the model emitted
    written = encode(preds, data.answer_len)
    assert last["test_char_acc"] == pytest.approx(float((written == plain.y[data.part("test")]).mean()))
    with torch.no_grad():
        raw = model(torch.from_numpy(data.x[data.part("test")])).argmax(-1).numpy()
    assert np.array_equal(data.written(raw), written)
    with pytest.raises(ConfigError, match="digits"):
        FAM.make_config({**TINY, "digits": "zero"})


def test_loop_learns_on_tiny_data():
    result = train(FAM, FAM.make_config({**TINY, "limit": 1024, "hidden": 128, "decoder_hidden": 128, "epochs": 8}),
                   progress=None)
    first, last = result["history"][0], result["history"][-1]
    assert last["train_loss"] < 0.7 * first["train_loss"]
    assert last["val_char_acc"] > first["val_char_acc"] + 0.1
    assert result["best"]["epoch"] >= 1 and "test_exact_match" in last


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_the_optimizer_runs_the_fused_kernel_and_steps_as_the_per_tensor_one(weight_decay):
    """Families train with PyTorch's fused Adam (AdamW with weight decay): the same steps as the per-tensor
    kernel to rounding, and a checkpoint written by the per-tensor kernel goes on with it when loaded."""
    config = FAM.make_config({**TINY, "weight_decay": weight_decay, "dropout": 0.0})
    data = FAM.build_data(config)
    torch.manual_seed(0)
    fused_model = FAM.build_model(config, data)
    plain_model = FAM.build_model(config, data)
    plain_model.load_state_dict(fused_model.state_dict())
    initial = [p.detach().clone() for p in fused_model.parameters()]
    fused = FAM.optimizer(fused_model, config)
    assert type(fused) is (torch.optim.AdamW if weight_decay else torch.optim.Adam) and fused.defaults["fused"]
    plain = type(fused)(plain_model.parameters(), lr=config.lr, eps=fused.defaults["eps"], foreach=False,
                        **({"weight_decay": weight_decay} if weight_decay else {}))
    batches = FAM.batches(data, config, torch.Generator().manual_seed(0), torch.device("cpu"))
    for _, batch in zip(range(5), batches):
        for model, optimizer in ((fused_model, fused), (plain_model, plain)):
            optimizer.zero_grad()
            FAM.loss(model, batch, config).backward()
            optimizer.step()
    moved = max((a - b).abs().max().item() for a, b in zip(fused_model.parameters(), initial))
    assert moved > 1e-3  # the steps changed the weights
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        assert torch.allclose(a, b, atol=1e-5), "the fused step differs from the per-tensor one"
    again = FAM.optimizer(plain_model, config)
    again.load_state_dict(plain.state_dict())
    assert not again.param_groups[0]["fused"]  # a run resumed from an older checkpoint keeps its kernel


def test_checkpoint_resume_continues_exactly(tmp_path):
    straight = train(FAM, FAM.make_config({**TINY, "epochs": 3}), checkpoint_dir=tmp_path / "a", progress=None)
    train(FAM, FAM.make_config({**TINY, "epochs": 2}), checkpoint_dir=tmp_path / "b", progress=None)
    lines = []
    resumed = train(FAM, FAM.make_config({**TINY, "epochs": 3}), checkpoint_dir=tmp_path / "b",
                    progress=lines.append)
    assert "resumed" in lines[0] and len(resumed["history"]) == 3
    assert resumed["history"][-1]["train_loss"] == pytest.approx(straight["history"][-1]["train_loss"], rel=1e-5)
    state, config, metrics = load_checkpoint(tmp_path / "b" / "last")
    assert state["epoch"] == 3 and config["epochs"] == 3 and len(metrics["history"]) == 3
    assert (tmp_path / "b" / "best" / "state.pt").is_file()
    assert json.loads((tmp_path / "b" / "best" / "metrics.json").read_text())["best"]["epoch"] >= 1


def test_a_run_killed_while_swapping_its_checkpoint_resumes_exactly(tmp_path):
    """A kill between the two renames of a checkpoint swap leaves last/ only under its backup name (and a half
    written new folder beside): the run finds it, resumes after the epoch it holds and ends as a straight run."""
    straight = train(FAM, FAM.make_config({**TINY, "epochs": 3}), progress=None)
    train(FAM, FAM.make_config({**TINY, "epochs": 2}), checkpoint_dir=tmp_path, progress=None)
    os.rename(tmp_path / "last", backup_of(tmp_path / "last"))
    (tmp_path / ".last.killed.tmp").mkdir()
    (tmp_path / ".last.killed.tmp" / "state.pt").write_bytes(b"half")
    lines = []
    resumed = train(FAM, FAM.make_config({**TINY, "epochs": 3}), checkpoint_dir=tmp_path, progress=lines.append)
    assert "resumed" in lines[0] and "after epoch 2" in lines[0]
    assert resumed["history"][-1]["train_loss"] == pytest.approx(straight["history"][-1]["train_loss"], rel=1e-5)
    assert load_checkpoint(tmp_path / "last")[0]["epoch"] == 3 and not backup_of(tmp_path / "last").exists()


def test_a_run_records_where_it_trained_at_its_start_and_at_each_resume(tmp_path):
    """Commit, CPU model and vector units, torch and Ray versions: one entry per session, kept in checkpoints."""
    import subprocess

    import ray

    train(FAM, FAM.make_config({**TINY, "epochs": 1}), checkpoint_dir=tmp_path, progress=None)
    resumed = train(FAM, FAM.make_config({**TINY, "epochs": 2}), checkpoint_dir=tmp_path, progress=None)
    _, _, metrics = load_checkpoint(tmp_path / "last")
    assert metrics["provenance"] == resumed["provenance"] and len(metrics["provenance"]) == 2
    first, second = metrics["provenance"]
    assert first["started"] <= second["started"]
    assert first["torch"] == torch.__version__ and first["ray"] == ray.__version__
    assert first["threads"] == TINY["threads"] and first["device"] == "cpu"
    assert "(" in first["cpu"] and first["cpu"].rstrip(")").split(", ")[-1] in \
        ("AVX512-BF16", "AVX512", "AVX2", "no AVX2", "AVX512-BF16, AMX", "AVX512, AMX")
    head = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:  # a checkout: the commit mathtune ran from
        assert first["git_commit"] == head.stdout.strip()


def test_ema_weights_are_evaluated_checkpointed_and_resumed_exactly(tmp_path):
    """With ``ema`` the loop evaluates, selects and checkpoints an exponential moving average of the weights
    (the optimizer keeps stepping the raw ones), and a resumed run continues the average where it stopped."""
    cfg = {**TINY, "ema": 0.9}
    data = FAM.build_data(FAM.make_config(cfg))
    steps = -(-len(data.train_index) // TINY["batch_size"])
    straight = train(FAM, FAM.make_config({**cfg, "epochs": 3}), checkpoint_dir=tmp_path / "a", progress=None)
    state, _, _ = load_checkpoint(tmp_path / "a" / "last")
    raw, averaged = state["train_model"], state["model"]
    assert raw.keys() == averaged.keys() and int(state["ema"]["n_averaged"]) == 3 * steps
    w = "encoder.weight_ih_l0"
    assert not torch.equal(raw[w], averaged[w])  # the average lags the last step
    assert torch.equal(straight["model"].state_dict()[w], averaged[w])
    # the history's figures are the averaged model's
    again = FAM.evaluate(straight["model"].eval(), data, FAM.make_config(cfg), torch.device("cpu"))
    assert again["val_exact_match"] == straight["history"][-1]["val_exact_match"]
    assert again["val_loss"] == pytest.approx(straight["history"][-1]["val_loss"], rel=1e-6)
    plain = train(FAM, FAM.make_config({**TINY, "epochs": 3}), progress=None)
    assert plain["history"][-1]["val_loss"] != straight["history"][-1]["val_loss"]

    train(FAM, FAM.make_config({**cfg, "epochs": 2}), checkpoint_dir=tmp_path / "b", progress=None)
    resumed = train(FAM, FAM.make_config({**cfg, "epochs": 3}), checkpoint_dir=tmp_path / "b", progress=None)
    assert resumed["history"][-1]["val_loss"] == pytest.approx(straight["history"][-1]["val_loss"], rel=1e-5)
    assert torch.allclose(resumed["model"].state_dict()[w], averaged[w], atol=1e-6)
    # a run written without the average cannot silently resume with one
    train(FAM, FAM.make_config({**TINY, "epochs": 1}), checkpoint_dir=tmp_path / "c", progress=None)
    with pytest.raises(CheckpointError, match="without ema"):
        train(FAM, FAM.make_config({**cfg, "epochs": 2}), checkpoint_dir=tmp_path / "c", progress=None)


class Scripted(type(FAM)):
    """arith-text2text whose evaluations report the scripted val_exact_match values in turn (every other figure
    measured): the last epoch's own weights, then the average, are the last two evaluations of a run."""

    def __init__(self, values):
        self.values = list(values)

    def evaluate(self, model, data, config, device, *, final=False):
        return {**super().evaluate(model, data, config, device, final=final), "val_exact_match": self.values.pop(0)}


def _epoch_states(seen):
    """A report callback that keeps each epoch's checkpoint state (the state.pt of the checkpoint it reports)."""
    return lambda metrics, path: seen.append(load_checkpoint(path)[0])


@pytest.mark.parametrize("script, taken, best_epoch", [
    ([0.1, 0.5, 0.3, 0.9], True, 3),   # the average beats every epoch: the run's best
    ([0.1, 0.5, 0.3, 0.4], True, 2),   # it beats the last epoch's own weights only: the last row, not the best
    ([0.1, 0.5, 0.6, 0.6], False, 3),  # a tie keeps the epoch's own weights
])
def test_average_last_evaluates_the_mean_of_the_last_epochs_and_is_selected_only_on_validation(
        tmp_path, script, taken, best_epoch):
    """average_last=2 of 3 epochs: the mean of the weights at the end of epochs 2 and 3 is evaluated after the
    last epoch; the last row (and its checkpoint's model) is the average only when its validation metric beats
    the epoch's own weights', and the run's best only when it beats every epoch's."""
    fam = Scripted(script)
    cfg = FAM.make_config({**TINY, "epochs": 3, "average_last": 2})
    data = fam.build_data(cfg)
    seen = []
    result = train(fam, cfg, data=data, checkpoint_dir=tmp_path, report=_epoch_states(seen), progress=None)
    assert not fam.values  # one evaluation per epoch and one of the average
    history = result["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]  # one row (and one report) per epoch
    assert all("averaged_last" not in r for r in history[:2]) and "average" not in seen[0]
    last = history[-1]
    assert last["averaged_last"] == (2 if taken else 0)
    assert last["val_exact_match"] == script[3 if taken else 2]
    assert (last["averaged_val_exact_match"], last["unaveraged_val_exact_match"]) == (script[3], script[2])
    other = "unaveraged" if taken else "averaged"  # the evaluation the row is not
    assert last["val_loss"] != last[f"{other}_val_loss"] and last["test_loss"] != last[f"{other}_test_loss"]
    assert result["best"]["epoch"] == best_epoch and result["best"]["val_exact_match"] == max(script[:2] + [last[
        "val_exact_match"]])

    raw = [s.get("train_model", s["model"]) for s in seen]  # the weights the optimizer reached at each epoch's end
    mean = {k: torch.stack([w[k] for w in raw[1:]]).mean(0) for k in raw[0] if torch.is_floating_point(raw[0][k])}
    final = load_checkpoint(tmp_path / "last")[0]
    assert int(final["average"]["n_averaged"]) == 2 and int(seen[1]["average"]["n_averaged"]) == 1
    for k, v in mean.items():
        assert torch.allclose(final["average"][f"module.{k}"], v, atol=1e-6), k
    assert not torch.equal(mean["encoder.weight_ih_l0"], raw[2]["encoder.weight_ih_l0"])
    assert torch.equal(final["train_model" if taken else "model"]["encoder.weight_ih_l0"],
                       raw[2]["encoder.weight_ih_l0"])
    measured = mean if taken else raw[2]
    assert all(torch.allclose(final["model"][k], measured[k], atol=1e-6) for k in mean)
    # best/ holds the weights its row was measured on: the row's loss again from that checkpoint
    chosen = load_trained(tmp_path / "best", family=FAM, data=data)
    again = FAM.evaluate(chosen.model, data, cfg, torch.device("cpu"), final=True)
    assert again["val_loss"] == pytest.approx(result["best"]["val_loss"], rel=1e-5)
    assert load_checkpoint(tmp_path / "best")[2]["best"]["epoch"] == best_epoch


def test_average_last_with_ema_averages_the_exponential_averages(tmp_path):
    """With ema the epochs' weights are the exponential average's (the ones each epoch evaluates): average_last
    averages those."""
    seen = []
    cfg = FAM.make_config({**TINY, "epochs": 3, "average_last": 2, "ema": 0.9})
    train(FAM, cfg, checkpoint_dir=tmp_path, report=_epoch_states(seen), progress=None)
    final = load_checkpoint(tmp_path / "last")[0]
    w = "encoder.weight_ih_l0"
    evaluated = [s["ema"][f"module.{w}"] for s in seen]
    assert torch.allclose(final["average"][f"module.{w}"], (evaluated[1] + evaluated[2]) / 2, atol=1e-6)
    assert not torch.allclose(final["average"][f"module.{w}"], (seen[1]["train_model"][w] + seen[2]["train_model"][w]) / 2,
                              atol=1e-6)


class ByLoss(type(FAM)):
    """arith-text2text selecting on val_loss, lowest or (to see the other choice of the average) highest first:
    a figure the average never ties with the epoch's own weights on."""

    metric = "val_loss"

    def __init__(self, mode):
        self.mode = mode


@pytest.mark.parametrize("mode", ["min", "max"])
def test_a_run_stopped_among_its_averaged_epochs_resumes_exactly(tmp_path, mode):
    """Stopped after epoch 2 of 4 with average_last=3 (one epoch averaged), the run resumes with the running
    average from its checkpoint and ends as the run that went straight through: rows, average and weights,
    whether the average is taken or not (one of the two modes takes it)."""
    fam = ByLoss(mode)
    cfg = FAM.make_config({**TINY, "epochs": 4, "average_last": 3})
    straight = train(fam, cfg, checkpoint_dir=tmp_path / "a", progress=None)
    a = straight["history"][-1]
    assert a["averaged_last"] == (3 if is_better(a["averaged_val_loss"], a["unaveraged_val_loss"], mode) else 0)

    def stop(metrics, path):
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fam, cfg, checkpoint_dir=tmp_path / "b", report=stop, progress=None)
    assert int(load_checkpoint(tmp_path / "b" / "last")[0]["average"]["n_averaged"]) == 1
    resumed = train(fam, cfg, checkpoint_dir=tmp_path / "b", progress=None)
    assert resumed["resumed_after"] == 2
    b = resumed["history"][-1]
    assert a["averaged_last"] == b["averaged_last"] and a["epoch"] == b["epoch"] == 4
    assert resumed["best"]["epoch"] == straight["best"]["epoch"]
    for key in ("train_loss", "val_loss", "averaged_val_loss", "averaged_test_loss", "unaveraged_val_loss"):
        assert b[key] == pytest.approx(a[key], rel=1e-5), key
    for which in ("last", "best"):
        sa, sb = load_checkpoint(tmp_path / "a" / which)[0], load_checkpoint(tmp_path / "b" / which)[0]
        assert sa["epoch"] == sb["epoch"]
        for key in [k for k in ("model", "average") if k in sa]:
            assert all(torch.allclose(sa[key][k].float(), sb[key][k].float(), atol=1e-6) for k in sa[key]), (which, key)
    # the finished run read back again: nothing to train, its model the one its last row measured
    again = train(fam, cfg, checkpoint_dir=tmp_path / "b", progress=None)
    assert again["resumed_after"] == 4 and again["history"] == resumed["history"]
    last_model = load_checkpoint(tmp_path / "b" / "last")[0]["model"]
    assert all(torch.equal(again["model"].state_dict()[k], v) for k, v in last_model.items())
    # a checkpoint without the average of the epochs already trained cannot resume into them
    train(FAM, FAM.make_config({**TINY, "epochs": 2}), checkpoint_dir=tmp_path / "c", progress=None)
    with pytest.raises(CheckpointError, match="holds no average of epochs 2-2"):
        train(FAM, cfg, checkpoint_dir=tmp_path / "c", progress=None)


class TwoRates(type(FAM)):
    """arith-text2text with its encoder at lr and the rest at lr / 10, recording every step's group lrs."""

    def __init__(self):
        self.seen: list[list[float]] = []

    def optimizer(self, model, config):
        enc = list(model.encoder.parameters())
        ids = {id(p) for p in enc}
        rest = [p for p in model.parameters() if id(p) not in ids]
        opt = torch.optim.Adam([{"params": enc, "lr": config.lr}, {"params": rest, "lr": config.lr / 10}])
        opt.register_step_pre_hook(lambda o, args, kwargs: self.seen.append([g["lr"] for g in o.param_groups]))
        return opt


def test_warmup_raises_every_group_to_its_own_scheduled_lr_then_leaves_the_schedule_alone(tmp_path):
    """warmup=0.45 over 3 epochs: the first round(0.45 x 3 x steps per epoch) steps train at (k + 1) / W of each
    group's lr (its own base lr times the cosine schedule of the epoch), the later ones at the schedule's lr;
    the optimizer state checkpointed is the one a run without warm-up has."""
    fam = TwoRates()
    cfg = FAM.make_config({**TINY, "epochs": 3, "lr_schedule": "cosine", "warmup": 0.45})
    data = fam.build_data(cfg)
    per_epoch = fam.steps_per_epoch(data, cfg)
    assert per_epoch == Family.steps_per_epoch(fam, data, cfg) == -(-len(data.train_index) // 32)  # counted
    warm = round(0.45 * 3 * per_epoch)
    assert per_epoch < warm < 2 * per_epoch  # the warm-up ends in the second epoch
    train(fam, cfg, data=data, checkpoint_dir=tmp_path / "w", progress=None)
    assert len(fam.seen) == 3 * per_epoch
    for step, lrs in enumerate(fam.seen):
        epoch = step // per_epoch
        schedule = 0.5 * (1 + math.cos(math.pi * epoch / 3))  # CosineAnnealingLR, stepped per epoch
        ramp = min(1.0, (step + 1) / warm)
        assert lrs == pytest.approx([TINY["lr"] * schedule * ramp, TINY["lr"] / 10 * schedule * ramp], rel=1e-9)
    assert fam.seen[0][0] == pytest.approx(TINY["lr"] / warm)  # from about 0
    assert fam.seen[warm - 1][0] == pytest.approx(0.75 * TINY["lr"])  # to the schedule's lr of epoch 2
    plain = TwoRates()
    train(plain, cfg.replace(warmup=0.0), data=data, checkpoint_dir=tmp_path / "p", progress=None)
    assert all(lrs == plain.seen[i] for i, lrs in enumerate(fam.seen[warm:], warm))
    saved = [g["lr"] for g in load_checkpoint(tmp_path / "w" / "last")[0]["optimizer"]["param_groups"]]
    assert saved == [g["lr"] for g in load_checkpoint(tmp_path / "p" / "last")[0]["optimizer"]["param_groups"]]


def test_a_run_stopped_during_its_warmup_resumes_exactly(tmp_path):
    """A run stopped after epoch 1 of a warm-up that lasts into epoch 2 resumes at the step count where it was
    and ends as the run that went straight through."""
    cfg = FAM.make_config({**TINY, "epochs": 3, "lr_schedule": "cosine", "warmup": 0.4})
    straight = train(FAM, cfg, progress=None)

    def stop(metrics, path):
        if metrics["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(FAM, cfg, checkpoint_dir=tmp_path, report=stop, progress=None)
    resumed = train(FAM, cfg, checkpoint_dir=tmp_path, progress=None)
    assert resumed["resumed_after"] == 1
    for a, b in zip(straight["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    assert straight["history"][0]["train_loss"] != train(FAM, cfg.replace(warmup=0.0, epochs=1),
                                                         progress=None)["history"][0]["train_loss"]


def test_progress_lines_give_the_runs_eta(tmp_path):
    """Every epoch line but the last says the time left (epochs to go x recent epoch time) and the best so far;
    a resumed run's ETA rests on the epochs it read back."""
    lines = []
    train(FAM, FAM.make_config({**TINY, "epochs": 2}), checkpoint_dir=tmp_path / "r", progress=lines.append)
    epoch_lines = [l for l in lines if " epoch " in l]
    assert "ETA " in epoch_lines[0] and "(about " in epoch_lines[0] and "ETA" not in epoch_lines[-1]
    assert "best " in epoch_lines[0] and "(epoch 1)" in epoch_lines[0]
    history = [{"epoch": 1, "epoch_time_s": 100.0}, {"epoch": 2, "epoch_time_s": 10.0},
               {"epoch": 3, "epoch_time_s": 20.0}, {"epoch": 4, "epoch_time_s": 30.0}]
    assert eta_seconds(history, 10) == pytest.approx(6 * 20.0)   # mean of the last three epochs
    assert eta_seconds(history, 4) == 0.0
    assert (format_duration(45), format_duration(720), format_duration(7500)) == ("45 s", "12 min", "2 h 05 min")


def test_nan_loss_stops_the_run():
    class NanFamily(type(FAM)):
        def loss(self, model, batch, config, generator=None):
            return super().loss(model, batch, config, generator) * float("nan")

    with pytest.raises(FloatingPointError, match="loss became nan in epoch 1"):
        train(NanFamily(), FAM.make_config({**TINY, "epochs": 1, "limit": 64}), progress=None)


@pytest.mark.parametrize("overrides, message", [
    ({"hiden": 3}, "unknown parameter 'hiden'"),
    ({"hidden": "wide"}, "hidden: expected int"),
    ({"hidden": 0}, "below the minimum"),
    ({"dropout": 1.5}, "above the maximum"),
    ({"ops": "/"}, "not one of"),
    ({"split": "nan"}, "split: expected float"),
    ({"extra_layers": 1.5}, "extra_layers: expected int"),
    ({"warmup": 0.6}, "warmup: 0.6 is above the maximum 0.5"),
    ({"warmup": -0.01}, "warmup: -0.01 is below the minimum"),
    ({"epochs": 3, "average_last": 4}, r"average_last: 4 is above epochs \(3\)"),
    ({"average_last": -1}, "average_last: -1 is below the minimum"),
])
def test_bad_config_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        FAM.make_config(overrides)


def test_ema_forgets_the_initial_batch_norm_statistics_within_a_few_hundred_steps():
    """The average warms up (decay min(d, (1 + n) / (10 + n)) after n updates): a batch-norm variance that
    starts at 1 and trains down to 1e-3 is averaged to about 1e-3 after 300 steps, where a fixed decay of
    0.999 would still carry 0.999 ** 300 = 74% of the starting 1. Later steps use the decay asked for."""
    bn = torch.nn.BatchNorm1d(3)
    ema = averaged_model(bn, 0.999)
    ema.update_parameters(bn)  # the first update copies
    bn.running_var.fill_(1e-3)
    bn.num_batches_tracked.fill_(7)
    for _ in range(300):
        ema.update_parameters(bn)
    averaged = ema.module
    assert torch.all(averaged.running_var < 1.5e-3)
    assert int(averaged.num_batches_tracked) == 7
    for _ in range(10000):  # past n = 8,991, where the warm-up reaches 0.999
        ema.update_parameters(bn)
    with torch.no_grad():
        bn.weight.fill_(2.0)
    ema.update_parameters(bn)
    assert torch.allclose(averaged.weight, torch.full((3,), 1.001))
