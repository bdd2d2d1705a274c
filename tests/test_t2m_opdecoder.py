"""The operation-level decoder (``decoder: op``) on the real COL775 files, shrunk: tiny limits, small sizes, one
thread, CPU."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mathtune.search.cli import main
from mathtune.trainables import get_family, train
from mathtune.trainables.checkpoints import load_trained
from mathtune.trainables.t2m.beam import greedy_decode
from mathtune.trainables.t2m.data import load_split
from mathtune.trainables.t2m.dataset import collate, encode_part
from mathtune.trainables.t2m.decoding import decode_part, score_part
from mathtune.trainables.t2m.ensemble import decode_ensemble
from mathtune.trainables.t2m.evaluation import find_checkpoint, vocabularies_of
from mathtune.trainables.t2m.models import Decoder, OpDecoder, Seq2Prog, record_attention
from mathtune.trainables.t2m.programs import CONST, NUM, OP, REF

from .t2m_fixtures import COL775, one_thread, real_data  # noqa: F401  (autouse fixtures)

CPU = torch.device("cpu")
TINY = {"limit_train": 64, "limit_dev": 32, "epochs": 1, "threads": 1, "device": "cpu", "dec_emb": 16,
        "dec_hidden": 32, "beam_width": 3, "max_decode_len": 40, "batch_size": 16, "emb": 16, "hidden": 32,
        "decoder": "op"}


def tiny_config(family: str, **extra):
    fam = get_family(family)
    return fam, fam.make_config({**TINY, **extra})


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """An op-decoder t2m-lstm trained on 32 problems and validated on the same 32, with checkpoints."""
    root = tmp_path_factory.mktemp("t2m-op")
    path = root / "small.json"
    path.write_text(json.dumps(json.loads((COL775 / "train.json").read_text())[:32]))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    fam, cfg = tiny_config("t2m-lstm", train_file=str(path), dev_file=str(path), limit_dev=0, epochs=24,
                           emb=32, hidden=64, dec_hidden=64, dropout=0.0, teacher_forcing=1.0, lr=0.02,
                           lr_schedule="cosine", batch_size=4, beam_width=1)
    result = train(fam, cfg, checkpoint_dir=root / "run", progress=None)
    torch.set_num_threads(before)
    return fam, cfg, result, root


@pytest.fixture(scope="module")
def dev_batch(memorised):
    """24 dev problems and the memorising op-decoder model."""
    _, cfg, result, _ = memorised
    model = result["model"].eval()
    part = encode_part("dev", load_split(COL775 / "dev.json")[:24], model.meta, cfg)
    return model, collate(part, range(len(part)), CPU)


# ------------------------------------------------------------------------------------ the family option
def test_default_token_decoder_is_todays_model():
    """decoder defaults to token and builds exactly the model built without the option: the same decoder class,
    parameter names and shapes, and the same meta (no decoder key), so every earlier checkpoint loads."""
    fam, cfg = tiny_config("t2m-attn", decoder="token", limit_train=16, limit_dev=4)
    assert fam.make_config({})["decoder"] == "token"
    data = fam.build_data(cfg)
    model = fam.build_model(cfg, data)
    before = Seq2Prog(data.meta, fam.make_encoder(cfg, data), emb=cfg.dec_emb, hidden=cfg.dec_hidden,
                      layers=cfg.dec_layers, dropout=cfg.dropout, attention=True, copy=cfg.copy,
                      constrained=cfg.constrained)
    assert type(model.decoder) is Decoder and "decoder" not in model.meta
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in before.state_dict().items()}
    assert torch.equal(model.meta_json, before.meta_json)
    op = fam.build_model(cfg.replace(decoder="op"), data)
    assert type(op.decoder) is OpDecoder and op.meta["decoder"] == "op" and "decoder" not in data.meta


@pytest.mark.parametrize("family, extra", [("t2m-lstm", {}), ("t2m-attn", {"attention_style": "bahdanau"}),
                                           ("t2m-attn", {"attention_style": "luong"})])
def test_op_decoder_trains_through_the_shared_loop(family, extra):
    """decoder=op trains an epoch (teacher forcing 0.5: step by step, mixing in its own tokens) through the shared
    loop and reports the course metrics, the last at beam_width, matching what decode_part scores."""
    fam, cfg = tiny_config(family, teacher_forcing=0.5, **extra)
    result = train(fam, cfg, progress=None)
    last, model = result["last"], result["model"]
    assert isinstance(model.decoder, OpDecoder)
    assert torch.isfinite(torch.tensor([last["train_loss"], last["val_loss"]])).all() and last["val_loss"] > 0
    assert 0.0 <= last["val_exact_match"] <= 1.0 and 0.0 <= last["val_exec_acc"] <= 1.0
    assert last["val_beam_width"] == 3.0
    part = result["data"].parts["val"]
    preds, _ = decode_part(model, part, widths=[3], config=cfg, device=CPU)
    assert len(preds[3]) == cfg.limit_dev and all(p.endswith("|") for p in preds[3])
    assert score_part(part, preds[3]).exact_match / 100 == last["val_exact_match"]


@pytest.mark.parametrize("style", ["none", "bahdanau", "luong"])
def test_one_step_per_operation_teacher_forcing_equals_step_by_step(style):
    """Fully teacher-forced, the op decoder runs one LSTM step per operation and scores every position at once;
    it gives what feeding the tokens one at a time gives, on gold programs (with step references) and on
    random well-formed and malformed token sequences (those go step by step)."""
    fam, cfg = tiny_config("t2m-attn", limit_train=64, limit_dev=16, dec_layers=2, attention_style=style)
    data = fam.build_data(cfg)
    torch.manual_seed(0)
    model = fam.build_model(cfg, data).eval()
    assert model.decoder.fused
    batch = collate(data.parts["val"], range(16), CPU)
    assert any(model.vocab.tokens[i].startswith("#") for i in batch["tgt"].flatten().tolist())
    mem, state = model.start(batch)
    with torch.no_grad():
        fast = model.teacher_forced(mem, state, batch["tgt"])
        slow = model.teacher_forced(mem, state, batch["tgt"], force_steps=True)
        ok = torch.isfinite(slow)
        assert torch.equal(ok, torch.isfinite(fast)) and torch.allclose(fast[ok], slow[ok], atol=1e-5)
        table, gen = model.table, torch.Generator().manual_seed(0)
        ops = (table.kind == OP).nonzero().flatten()
        args = torch.cat([(table.kind == k).nonzero().flatten() for k in (CONST, NUM, REF)])
        for malformed in (False, True):
            rows = []
            for _ in range(16):
                seq = [model.vocab.sos_id]
                while len(seq) < 30:
                    op = int(ops[torch.randint(len(ops), (1,), generator=gen)])
                    seq += [op] + args[torch.randint(len(args), (int(table.arity[op]),), generator=gen)].tolist()
                if malformed:
                    seq[int(torch.randint(1, 30, (1,), generator=gen))] = model.vocab.eos_id
                rows.append(seq[:30])
            inputs = torch.tensor(rows)
            assert torch.allclose(model.decoder.sequence(mem, state, inputs),
                                  model.decoder._stepwise(mem, state, inputs), atol=1e-5)


# ------------------------------------------------------------------------------------ learning
def test_op_decoder_memorises_its_training_problems(memorised):
    """24 epochs on 32 problems (validated on the same 32) get three quarters of them exactly right."""
    _, _, result, _ = memorised
    history = result["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 5
    assert history[0]["val_exact_match"] < 0.1 and result["best"]["val_exact_match"] >= 0.75


# ------------------------------------------------------------------------------------ decoding
# The token decoder's decoding tests, run here on this module's op-decoder model (its ``dev_batch`` fixture):
# beam width 1 is greedy, a wider nested beam never scores lower, constrained outputs are well-formed programs.
from .test_t2m_models import (test_beam_width_one_is_greedy_decoding, test_constrained_outputs_are_well_formed_programs,  # noqa: E402,F401,E501
                              test_wider_beam_never_scores_lower)


def test_attention_is_recorded_once_per_token():
    """With attention, record_attention gets one distribution per decoded token, as with the token decoder."""
    fam, cfg = tiny_config("t2m-attn", limit_train=16, limit_dev=8)
    data = fam.build_data(cfg)
    model = fam.build_model(cfg, data).eval()
    batch = collate(data.parts["val"], range(8), CPU)
    plain = greedy_decode(model, batch, 30)
    with record_attention(model) as log:
        recorded = greedy_decode(model, batch, 30)
    assert recorded.tokens == plain.tokens
    assert len(log) == max(len(t) + int(f) for t, f in zip(plain.tokens, plain.finished.tolist()))
    assert all(torch.allclose(a.sum(-1), torch.ones(8), atol=1e-5) for a in log)


# ------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_reloads_and_decodes_identically(memorised, tmp_path, capsys):
    """The best checkpoint rebuilds the op decoder from its files alone (the state's meta says decoder op, even
    against a configuration that says token) and decodes exactly as the trained model; `mathtune evaluate`
    scores it and a shipped-model export loads too."""
    from mathtune.trainables.t2m.shipped import export_model

    _, cfg, result, root = memorised
    ckpt = find_checkpoint(root / "run")
    part = encode_part("dev", load_split(COL775 / "dev.json")[:16], result["model"].meta, cfg)
    best = load_trained(ckpt, data=vocabularies_of, overrides={"threads": 1}).model
    assert isinstance(best.decoder, OpDecoder) and best.meta["decoder"] == "op"
    expected, _ = decode_part(best, part, widths=[1, 3], config=cfg, device=CPU)
    for overrides in ({"threads": 1}, {"threads": 1, "decoder": "token"}):
        again = load_trained(ckpt, data=vocabularies_of, overrides=overrides).model
        assert decode_part(again, part, widths=[1, 3], config=cfg, device=CPU)[0] == expected
    rebuilt = load_trained(ckpt, overrides={"threads": 1}).model  # the run's own dataset, from config.json
    assert decode_part(rebuilt, part, widths=[1], config=cfg, device=CPU)[0][1] == expected[1]
    last = load_trained(root / "run" / "last", data=vocabularies_of, overrides={"threads": 1}).model
    assert decode_part(last, part, widths=[1], config=cfg, device=CPU)[0][1] == \
        decode_part(result["model"], part, widths=[1], config=cfg, device=CPU)[0][1]
    code = main(["evaluate", str(root / "run"), str(COL775 / "dev.json"), "--beam-width", "1", "3", "--limit", "16",
                 "--threads", "1", "--out", str(tmp_path / "preds.json")])
    assert code == 0, capsys.readouterr().err
    for w in (1, 3):
        items = json.loads((tmp_path / f"preds.beam{w}.json").read_text())
        assert [it["predicted"] for it in items] == expected[w]
    shipped = export_model(ckpt, tmp_path / "shipped", record={"family": "t2m-lstm"})
    loaded = load_trained(shipped, data=vocabularies_of, overrides={"threads": 1}).model
    assert isinstance(loaded.decoder, OpDecoder)
    assert all(p.endswith("|") for p in decode_part(loaded, part, widths=[1], config=cfg, device=CPU)[0][1])
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("state.pt", "config.json"):
        shutil.copy(ckpt / name, bare / name)
    assert isinstance(load_trained(bare, data=vocabularies_of).model.decoder, OpDecoder)


def test_ensemble_of_an_op_and_a_token_model(memorised):
    """An op-decoder model and a token-decoder model of the same vocabulary decode as one ensemble (the flat
    decoder state carries each member's own tensors); alone, a member decodes as itself."""
    fam, cfg, result, _ = memorised
    model = result["model"].eval()
    token = fam.build_model(cfg.replace(decoder="token"), result["data"]).eval()
    examples = load_split(COL775 / "dev.json")[:12]
    pair = decode_ensemble([(model, cfg), (token, cfg)], examples, widths=[1, 3], config=cfg, device=CPU)
    assert all(p.endswith("|") for p in pair[3]) and len(pair[1]) == 12
    alone = decode_ensemble([(model, cfg)], examples, widths=[1], config=cfg, device=CPU)
    part = encode_part("eval", examples, model.meta, cfg)
    assert alone[1] == decode_part(model, part, widths=[1], config=cfg, device=CPU)[0][1]


def test_glove_space_searches_the_decoder():
    """spaces/t2m-glove searches decoder token or op; its reference points keep the token decoder."""
    from mathtune.spaces.loader import load_space

    space = load_space("t2m-glove")
    assert space.params["decoder"].values == ("token", "op")
    assert all(p["decoder"] == "token" for p in space.points_to_evaluate)


def test_the_campaign_space_trains_and_scores_its_choices(ray_session, tmp_path):
    """spaces/t2m-glove itself, shrunk, with the choices the reference points do not cover (Luong attention with
    the operation decoder, no attention with it): each trial trains, reports dev execution accuracy, and its
    selected checkpoint is scored at every decode-time beam width."""
    import yaml

    from mathtune.analysis import load_trials
    from mathtune.search import SearchOptions, run_search
    from mathtune.spaces.loader import load_space

    small = tmp_path / "small.json"
    small.write_text(json.dumps(json.loads((COL775 / "train.json").read_text())[:32]))
    spec = yaml.safe_load(load_space("t2m-glove").path.read_text())
    point = dict(spec["points_to_evaluate"][0])
    spec["points_to_evaluate"] = [{**point, "attention_style": "luong", "decoder": "op"},
                                  {**point, "attention_style": "none", "decoder": "op"}]
    path = tmp_path / "t2m-glove.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    shrink = {"epochs": 1, "average_last": 0, "threads": 1, "emb": 50, "hidden": 64, "dec_hidden": 128,
              "max_decode_len": 30, "batch_size": 16, "train_file": str(small), "dev_file": str(small)}
    outcome = run_search(str(path), SearchOptions(num_samples=2, storage_path=str(tmp_path), name="glove",
                                                  verbose=0, overrides=shrink, seed=1, max_concurrent=2,
                                                  dashboard=False, scheduler="none"))
    trials = load_trials(outcome.experiment_dir)
    assert outcome.counts == {"TERMINATED": 2} and not outcome.interrupted
    assert {(t.config["attention_style"], t.config["decoder"]) for t in trials} == {("luong", "op"), ("none", "op")}
    for trial in trials:
        assert 0.0 <= trial.best("val_exec_acc", decoded=False)["val_exec_acc"] <= 1.0
        assert [s["setting"]["beam_width"] for s in trial.decoded()["scored"]] == [1, 5, 10]
