"""arith-text2text benchmark: figures printed side by side from one run.

(a) our search (``arith-text2text-addsub``) versus the seed's recipe (LSTM 256, batch 8, 20 epochs, Adam,
    +-, split 0.5) trained by our loop: wall time, and the test exact match each reaches; for the search,
    the wall time until the trial selected on validation first has >= 99% test exact match.
(b) our loop's training samples per second versus a minimal hand-written PyTorch loop, same model, same
    batch size, same thread count.

    python bench/arith_bench.py --part b                 # ~1 minute
    python bench/arith_bench.py --part a --num-samples 8 # the search and the seed recipe (tens of minutes)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def part_b(batch_size: int, epochs: int, threads: int) -> None:
    from mathtune.trainables import get_family, train
    from mathtune.trainables.arith.text2text import Seq2SeqLSTM

    fam = get_family("arith-text2text")
    config = fam.make_config({"batch_size": batch_size, "epochs": epochs, "threads": threads})
    data = fam.build_data(config)

    # minimal hand-written loop: same model, data, optimiser and batch size; no metrics, no checkpoints
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Seq2SeqLSTM(data.vocab_size, data.answer_len, hidden=256, decoder_hidden=256)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(data.x[data.train_index])
    y = torch.from_numpy(data.y[data.train_index])
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            logits = model(x[idx])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1))
            loss.backward()
            opt.step()
    hand = len(x) * epochs / (time.perf_counter() - t0)

    result = train(fam, config, data=data, progress=None)
    ours = sum(h["train_samples_per_s"] for h in result["history"]) / len(result["history"])
    print(f"(b) training throughput, batch {batch_size}, {threads} thread(s), {epochs} epoch(s) each:")
    print(f"    hand-written PyTorch loop: {hand:8.0f} samples/s")
    print(f"    mathtune loop:             {ours:8.0f} samples/s  (ratio {ours / hand:.2f}; the mathtune loop "
          f"also evaluates and checkpoints each epoch, outside the timed training part)")


def part_a(num_samples: int, seed_epochs: int, storage: str) -> None:
    from mathtune.analysis import load_trials
    from mathtune.search import SearchOptions, run_search
    from mathtune.trainables import get_family, train

    fam = get_family("arith-text2text")
    t0 = time.perf_counter()
    outcome = run_search("arith-text2text-addsub", SearchOptions(num_samples=num_samples, storage_path=storage,
                                                                 verbose=0, seed=0))
    search_wall = time.perf_counter() - t0
    trials = load_trials(outcome.experiment_dir)
    # replay the search's timeline: at each reported epoch, which trial leads on validation, and its test EM
    events = sorted((r["timestamp"], t.trial_id, r) for t in trials for r in t.history)
    start = min(e[0] for e in events) if events else 0
    best_val, chosen_test, reached = -1.0, 0.0, None
    for ts, _, row in events:
        if row["val_exact_match"] > best_val:
            best_val, chosen_test = row["val_exact_match"], row["test_exact_match"]
            if reached is None and chosen_test >= 0.99:
                reached = ts - start
    seed_cfg = fam.make_config({"hidden": 256, "decoder_hidden": 256, "batch_size": 8, "epochs": seed_epochs,
                                "lr": 1e-3, "split": 0.5, "threads": os.cpu_count() or 1})
    t0 = time.perf_counter()
    seed = train(fam, seed_cfg, progress=None)
    seed_wall = time.perf_counter() - t0
    s_best = seed["best"]
    print(f"(a) +- at split 0.5, test exact match of the trial/epoch selected on validation:")
    print(f"    mathtune search ({num_samples} trials, TPE + ASHA): {chosen_test:.4f} test EM "
          f"(val {best_val:.4f}); {search_wall:.0f} s wall in all; >= 0.99 test EM first selected after "
          f"{'%.0f s' % reached if reached is not None else 'never'}")
    print(f"    seed recipe (LSTM 256, batch 8, {seed_epochs} epochs, Adam 1e-3) in our loop: "
          f"{s_best['test_exact_match']:.4f} test EM, {s_best['test_char_acc']:.4f} per-char "
          f"(val {s_best['val_exact_match']:.4f}, epoch {s_best['epoch']}); {seed_wall:.0f} s wall")
    print(f"    experiment: {outcome.experiment_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--seed-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8, help="(b) batch size (the seed's 8 by default)")
    parser.add_argument("--epochs", type=int, default=1, help="(b) epochs timed per loop")
    parser.add_argument("--threads", type=int, default=1, help="(b) torch threads")
    parser.add_argument("--storage-path", default=os.path.join(tempfile.gettempdir(), "mathtune-bench"))
    args = parser.parse_args()
    print(f"mathtune arith benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}")
    if args.part in ("b", "all"):
        part_b(args.batch_size, args.epochs, args.threads)
    if args.part in ("a", "all"):
        part_a(args.num_samples, args.seed_epochs, args.storage_path)


if __name__ == "__main__":
    main()
