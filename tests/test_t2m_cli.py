"""`mathtune evaluate` and `mathtune score` on real COL775 data and a tiny trained checkpoint."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from mathtune.search.cli import main
from mathtune.trainables import get_family, train
from mathtune.trainables.t2m.data import load_split
from mathtune.trainables.t2m.dataset import encode_part
from mathtune.trainables.checkpoints import load_trained
from mathtune.trainables.t2m.decoding import decode_part
from mathtune.trainables.t2m.evaluation import find_checkpoint, vocabularies_of

COL775 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mathqa" / "col775"
DEV = COL775 / "dev.json"
LINE = re.compile(r"exact match\s+([\d.]+)%\s+execution accuracy\s+([\d.]+)%")


@pytest.fixture(scope="module", autouse=True)
def real_data():
    if not (COL775 / "train.json").is_file() or not DEV.is_file():
        pytest.skip(f"real COL775 files not found in {COL775} (see shared/data/PROVENANCE.md)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A t2m-attn run of three epochs on 48 training problems (validated on the same 48, so that its scores
    move); each epoch's checkpoint is also copied into a trial-style folder (checkpoint_000000, ...), as
    Tune keeps them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("t2m-cli")
    small = root / "small.json"
    small.write_text(json.dumps(json.loads((COL775 / "train.json").read_text())[:48]))
    trial = root / "trial"
    trial.mkdir()
    fam = get_family("t2m-attn")
    cfg = fam.make_config({"train_file": str(small), "dev_file": str(small), "epochs": 3, "threads": 1,
                           "device": "cpu", "emb": 16, "hidden": 32, "dec_emb": 16, "dec_hidden": 32,
                           "beam_width": 3, "max_decode_len": 40, "batch_size": 8, "lr": 0.01, "dropout": 0.0,
                           "teacher_forcing": 1.0})

    def report(metrics, path):
        shutil.copytree(path, trial / f"checkpoint_{metrics['epoch'] - 1:06d}")

    result = train(fam, cfg, checkpoint_dir=root / "run", report=report, progress=None)
    torch.set_num_threads(before)
    return root, trial, result


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def scores_of(text: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in LINE.findall(text)]


def test_score_gives_100_on_gold_programs(tmp_path, capsys):
    """Gold programs as predictions (trailing bar kept or dropped) score 100/100 on all of dev."""
    items = json.loads(DEV.read_text())
    for i, it in enumerate(items):
        it["predicted"] = it["linear_formula"] if i % 2 else it["linear_formula"].rstrip("|")
    path = tmp_path / "gold.json"
    path.write_text(json.dumps(items))
    code, out, _ = run(capsys, "score", path, "--out", tmp_path / "scored.json")
    assert code == 0 and scores_of(out) == [(100.0, 100.0)] and f"({len(items)} problems" in out
    assert "; 0 programs do not execute)" in out
    scored = json.loads((tmp_path / "scored.json").read_text())
    assert len(scored) == len(items) and all(r["em"] and r["exec_correct"] for r in scored)
    assert scored[0]["predicted_answer"] == pytest.approx(items[0]["answer"], rel=0.02)


def test_evaluate_writes_predictions_that_score_identically(trained, tmp_path, capsys):
    """evaluate prints EM/exec per width and writes scorer-format files that `score` scores the same; the
    predictions equal the in-memory model's (the checkpoint alone rebuilds the model)."""
    root, _, result = trained
    out_file = tmp_path / "preds.json"
    code, out, err = run(capsys, "evaluate", root / "run", DEV, "--beam-width", 1, 3, "--limit", 16,
                         "--out", out_file, "--threads", 1, "--breakdown")
    assert code == 0, err
    printed = scores_of(out)
    assert len(printed) == 2
    # --breakdown: the widest width by gold program length, every problem in one group (COL775 has no category)
    assert "beam 3, by group:" in out and "category" not in out
    assert sum(int(n) for n in re.findall(r"^\s*\d\+?\s+(\d+)\s+[\d.]+%\s+[\d.]+%$", out, re.M)) == 16
    raw = json.loads(DEV.read_text())[:16]
    cfg = result["config"]
    part = encode_part("dev", load_split(DEV)[:16], result["model"].meta, cfg)
    best_model = load_trained(find_checkpoint(root / "run"), data=vocabularies_of, overrides={"threads": 1}).model
    expected, _ = decode_part(best_model, part, widths=[1, 3], config=cfg, device=torch.device("cpu"))
    for w, line in zip((1, 3), printed):
        items = json.loads((tmp_path / f"preds.beam{w}.json").read_text())
        assert [{k: v for k, v in it.items() if k != "predicted"} for it in items] == raw
        assert [it["predicted"] for it in items] == expected[w]
        code, out, _ = run(capsys, "score", tmp_path / f"preds.beam{w}.json")
        assert code == 0 and scores_of(out) == [line]


def test_checkpoint_state_and_config_alone_rebuild_the_model(trained, tmp_path, capsys):
    """A folder holding only state.pt and config.json evaluates exactly like the full checkpoint."""
    root, _, _ = trained
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("state.pt", "config.json"):
        shutil.copy(root / "run" / "best" / name, bare / name)
    outputs = []
    for ckpt in (root / "run" / "best", bare):
        code, out, err = run(capsys, "evaluate", ckpt, DEV, "--beam-width", 2, "--limit", 8, "--threads", 1,
                             "--out", tmp_path / f"{ckpt.name}.json")
        assert code == 0, err
        outputs.append(json.loads((tmp_path / f"{ckpt.name}.json").read_text()))
    assert outputs[0] == outputs[1]


def test_evaluate_trial_folder_picks_best_checkpoint(trained, tmp_path, capsys):
    """A trial folder resolves to the checkpoint whose epoch scored best on val_exec_acc."""
    _, trial, result = trained
    values = [h["val_exec_acc"] for h in result["history"]]
    assert sorted(p.name for p in trial.iterdir()) == [f"checkpoint_{i:06d}" for i in range(len(values))]
    chosen = find_checkpoint(trial)
    assert chosen.name == f"checkpoint_{values.index(max(values)):06d}"
    code, out, err = run(capsys, "evaluate", trial, DEV, "--beam-width", 2, "--limit", 4, "--threads", 1,
                         "--out", tmp_path / "p.json")
    assert code == 0, err
    assert chosen.name in out
    assert len(json.loads((tmp_path / "p.json").read_text())) == 4


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    (json.dumps([{"Problem": "2 3", "answer": 5}]), "linear_formula"),
    (json.dumps({"Problem": "x"}), "expected a JSON array"),
])
def test_evaluate_bad_data_file_is_one_line_error(trained, tmp_path, capsys, content, needle):
    """A broken data file ends `mathtune evaluate` with one error line and exit status 2."""
    root, _, _ = trained
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out, err = run(capsys, "evaluate", root / "run", bad, "--threads", 1)
    assert code == 2 and err.count("\n") == 1 and err.startswith("mathtune: error:") and needle in err


def test_cli_user_errors_are_one_line(trained, tmp_path, capsys):
    """Missing files, a folder without checkpoints and a data file scored as predictions: exit 2, one line."""
    root, _, _ = trained
    (tmp_path / "empty").mkdir()
    for argv, needle in [(("evaluate", root / "run", tmp_path / "nope.json"), "not found"),
                         (("evaluate", tmp_path / "empty", DEV), "checkpoint"),
                         (("score", DEV), "'predicted'"),
                         (("score", tmp_path / "nope.json"), "not found")]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and needle in err, (argv, err)


def test_missing_data_files_are_one_line_errors(tmp_path, capsys, monkeypatch):
    """A missing train file, or a $MATHTUNE_MATHQA folder without the files, stops `mathtune train` in one line."""
    code, _, err = run(capsys, "train", "t2m-lstm", "--set", f"train_file={tmp_path / 'nope.json'}", "--set",
                       "threads=1", "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "train_file" in err and "not found" in err
    monkeypatch.setenv("MATHTUNE_MATHQA", str(tmp_path))
    code, _, err = run(capsys, "train", "t2m-attn", "--set", "threads=1", "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "MATHTUNE_MATHQA" in err and str(tmp_path) in err


# ------------------------------------------------------------------------------------ ensembles
def _train_small(root: Path, family: str, problems: int, **extra) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    small = root / f"small{problems}.json"
    small.write_text(json.dumps(json.loads((COL775 / "train.json").read_text())[:problems]))
    fam = get_family(family)
    sizes = {"emb": 16, "hidden": 32} if "bert" not in family else {}
    cfg = fam.make_config({"train_file": str(small), "dev_file": str(small), "epochs": 1, "threads": 1,
                           "device": "cpu", "dec_emb": 16, "dec_hidden": 32, "beam_width": 2, "max_decode_len": 40,
                           "batch_size": 8, "lr": 0.01, **sizes, **extra})
    train(fam, cfg, checkpoint_dir=root / family, progress=None)
    return root / family


def test_ensemble_steps_are_the_mean_of_the_members_probabilities(trained, tmp_path):
    """An ensemble of two families scores each next token with the mean of their (grammar-masked)
    probabilities; an ensemble of a model with itself decodes exactly as the model alone."""
    from mathtune.trainables.t2m.dataset import collate
    from mathtune.trainables.t2m.ensemble import Ensemble, decode_ensemble
    from mathtune.trainables.t2m.programs import initial_state

    root, _, result = trained
    cpu = torch.device("cpu")
    _, cfg_a, a, _ = load_trained(find_checkpoint(root / "run"), data=vocabularies_of, overrides={"threads": 1})
    _, cfg_b, b, _ = load_trained(find_checkpoint(_train_small(tmp_path, "t2m-bert-frozen", 48)),
                                  data=vocabularies_of, overrides={"threads": 1})
    examples = load_split(DEV)[:12]
    parts = [encode_part("dev", examples, m.meta, c) for m, c in ((a, cfg_a), (b, cfg_b))]
    rows = list(range(12))
    batches = [collate(p, rows, cpu) for p in parts]
    ens = Ensemble([a, b])
    mem, state = ens.start_from(batches)
    prev = torch.full((12,), a.vocab.sos_id, dtype=torch.long)
    with torch.no_grad():
        got, _ = ens.step_logp(mem, state, prev, initial_state(12, cpu))
        la, _ = a.step_logp(*a.start(batches[0]), prev, initial_state(12, cpu))
        lb, _ = b.step_logp(*b.start(batches[1]), prev, initial_state(12, cpu))
    assert not torch.allclose(la, lb)
    finite = torch.isfinite(la)
    assert torch.equal(finite, torch.isfinite(got)) and torch.equal(finite, torch.isfinite(lb))
    assert torch.allclose(got[finite].exp(), ((la.exp() + lb.exp()) / 2)[finite], atol=1e-6)
    alone, _ = decode_part(a, parts[0], widths=[1, 3], config=cfg_a, device=cpu, with_loss=False)
    twice = decode_ensemble([(a, cfg_a), (a, cfg_a)], examples, widths=[1, 3], config=cfg_a, device=cpu)
    assert twice == alone


def test_evaluate_with_ensemble_and_a_member_of_another_vocabulary(trained, tmp_path, capsys):
    """`evaluate --ensemble` decodes with both models and scores the file; a member trained on other programs
    (another program vocabulary) is a one-line error."""
    root, _, _ = trained
    other = _train_small(tmp_path, "t2m-bert-frozen", 48)
    code, out, err = run(capsys, "evaluate", root / "run", DEV, "--ensemble", other, "--beam-width", 1, 2,
                         "--limit", 8, "--threads", 1, "--out", tmp_path / "e.json")
    assert code == 0, err
    assert "an ensemble of 2 models" in out and "t2m-bert-frozen" in out and len(scores_of(out)) == 2
    items = json.loads((tmp_path / "e.beam2.json").read_text())
    assert len(items) == 8 and all(it["predicted"].endswith("|") for it in items)
    foreign = _train_small(tmp_path / "f", "t2m-lstm", 6)
    code, _, err = run(capsys, "evaluate", root / "run", DEV, "--ensemble", foreign, "--limit", 4, "--threads", 1)
    assert code == 2 and err.count("\n") == 1 and "another program vocabulary" in err, err


# ------------------------------------------------------------------------------------ warm starts
def test_init_from_a_frozen_run_starts_fine_tuning_from_its_decoder(tmp_path, capsys):
    """`init_from` copies a t2m-bert-frozen run's decoder into a fresh t2m-bert-ft model (top layer trained):
    before any training step the two models give the same next-token log-probabilities, since the top layer
    starts from the pretrained weights the frozen states came from; a run of another vocabulary or other
    decoder sizes is a one-line error."""
    from mathtune.trainables.t2m.dataset import collate
    from mathtune.trainables.t2m.programs import initial_state

    frozen = _train_small(tmp_path, "t2m-bert-frozen", 48, attention_style="luong")
    _, cfg_f, f, _ = load_trained(find_checkpoint(frozen), data=vocabularies_of, overrides={"threads": 1})
    fam = get_family("t2m-bert-ft")
    small = tmp_path / "small48.json"
    cfg = fam.make_config({"train_file": str(small), "dev_file": str(small), "epochs": 1, "threads": 1,
                           "device": "cpu", "dec_emb": 16, "dec_hidden": 32, "attention_style": "luong",
                           "finetune_layers": 1, "init_from": str(frozen)})
    data = fam.build_data(cfg)
    torch.manual_seed(0)
    ft = fam.build_model(cfg, data)
    line = fam.warm_start(ft, cfg)
    assert line.startswith("initialised ") and str(frozen) in line
    ft.eval()
    examples = load_split(DEV)[:6]
    cpu, rows = torch.device("cpu"), list(range(6))
    b_f = collate(encode_part("dev", examples, f.meta, cfg_f), rows, cpu)
    b_t = collate(encode_part("dev", examples, ft.meta, cfg), rows, cpu)
    prev = torch.full((6,), f.vocab.sos_id, dtype=torch.long)
    with torch.no_grad():
        lf, _ = f.step_logp(*f.start(b_f), prev, initial_state(6, cpu))
        lt, _ = ft.step_logp(*ft.start(b_t), prev, initial_state(6, cpu))
    finite = torch.isfinite(lf)
    assert torch.equal(finite, torch.isfinite(lt))
    assert torch.allclose(lf[finite], lt[finite], atol=1e-4)

    code, out, err = run(capsys, "train", "t2m-bert-ft", "--set", f"train_file={small}", "--set", f"dev_file={small}",
                         "--set", "epochs=1", "--set", "threads=1", "--set", "dec_emb=16", "--set", "dec_hidden=64",
                         "--set", "attention_style=luong", "--set", "finetune_layers=1", "--set", f"init_from={frozen}",
                         "--out", tmp_path / "sizes")
    assert code == 2 and err.count("\n") == 1 and "has another decoder" in err, err
    foreign = _train_small(tmp_path / "f", "t2m-bert-frozen", 6, attention_style="luong")
    code, out, err = run(capsys, "train", "t2m-bert-ft", "--set", f"train_file={small}", "--set", f"dev_file={small}",
                         "--set", "epochs=1", "--set", "threads=1", "--set", "dec_emb=16", "--set", "dec_hidden=32",
                         "--set", "attention_style=luong", "--set", "finetune_layers=1", "--set", f"init_from={foreign}",
                         "--out", tmp_path / "vocab")
    assert code == 2 and err.count("\n") == 1 and "another program vocabulary" in err, err


def test_bert_ft_trains_all_layers_with_layer_lr_decay_and_warmup(tmp_path, capsys):
    """`mathtune train t2m-bert-ft` fine-tuning the whole MiniLM with layer_lr_decay and warmup (shrunk: 16
    problems, 64 word pieces, 2 epochs) trains, records both in its result and checkpoint, and keeps one
    optimizer group per layer at its own lr; a decay of 0 or a warm-up over half the run is a one-line error."""
    small = tmp_path / "small16.json"
    small.write_text(json.dumps(json.loads((COL775 / "train.json").read_text())[:16]))
    common = ["train", "t2m-bert-ft", "--set", f"train_file={small}", "--set", f"dev_file={small}",
              "--set", "epochs=2", "--set", "threads=1", "--set", "device=cpu", "--set", "max_input_tokens=64",
              "--set", "dec_emb=16", "--set", "dec_hidden=32", "--set", "batch_size=8", "--set", "beam_width=1",
              "--set", "max_decode_len=40", "--set", "encoder_lr=1e-4"]
    code, out, err = run(capsys, *common, "--set", "layer_lr_decay=0.8", "--set", "warmup=0.25",
                         "--out", tmp_path / "run")
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["config"]["layer_lr_decay"] == 0.8 and record["config"]["warmup"] == 0.25
    assert record["config"]["finetune_layers"] == 0 and len(json.loads(
        (tmp_path / "run" / "last" / "metrics.json").read_text())["history"]) == 2
    state = torch.load(tmp_path / "run" / "last" / "state.pt", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert [g["name"] for g in groups] == ["embeddings", *(f"layer{i}" for i in range(6)), "decoder"]
    assert groups[6]["lr"] == 1e-4 and groups[0]["lr"] == pytest.approx(1e-4 * 0.8 ** 6)  # warm-up over
    for bad, needle in (("layer_lr_decay=0", "layer_lr_decay: 0.0 must be above 0"),
                        ("warmup=0.9", "warmup: 0.9 is above the maximum 0.5")):
        code, out, err = run(capsys, *common, "--set", bad, "--out", tmp_path / "bad")
        assert code == 2 and err.count("\n") == 1 and needle in err, err


def test_amp_trains_on_any_cpu(tmp_path):
    """`amp=true` trains under bfloat16 autocast where the CPU has bfloat16 units and in float32 elsewhere
    (oneDNN has no bfloat16 LSTM without them): the fused teacher-forced path finishes an epoch either way."""
    from mathtune.trainables.loop import bf16_autocast_works

    run_dir = _train_small(tmp_path, "t2m-lstm", 24, amp=True, teacher_forcing=1.0)
    history = json.loads((run_dir / "last" / "metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["train_loss"] == history[0]["train_loss"]  # trained, not NaN
    assert bf16_autocast_works(torch.device("cpu")) == (torch.cpu._is_avx512_bf16_supported()
                                                         or torch.cpu._is_amx_tile_supported())


def test_breakdown_scores_by_program_length_and_by_category(tmp_path, capsys):
    """`mathtune score --breakdown` on original MathQA problems: the problems of one category predicted with
    their gold programs, the others left empty, score exact match 100% in that category and 0% in the others;
    the groups by program length hold every problem once."""
    original = COL775.parent / "original" / "dev.json"
    if not original.is_file():
        pytest.skip(f"{original} not found (see shared/data/PROVENANCE.md)")
    raw = json.loads(original.read_text())[:80]
    source = tmp_path / "dev80.json"
    source.write_text(json.dumps(raw))
    examples = load_split(source)
    right = sorted({r["category"] for r in raw})[0]
    items = [{**r, "answer": ex.answer, "predicted": r["linear_formula"] if r["category"] == right else ""}
             for r, ex in zip(raw, examples)]
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(items))
    code, out, _ = run(capsys, "score", path, "--breakdown")
    assert code == 0, out
    rows = {m[0]: (int(m[1]), float(m[2]), float(m[3]))
            for m in re.findall(r"^\s*(\S+)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)%$", out, re.M)}
    categories = {r["category"] for r in raw}
    assert rows[right][1] == 100.0 and all(rows[c][1] == 0.0 for c in categories - {right})
    assert sum(rows[c][0] for c in categories) == len(raw)
    ops = [k for k in rows if k not in categories]
    assert ops and sum(rows[k][0] for k in ops) == len(raw)
