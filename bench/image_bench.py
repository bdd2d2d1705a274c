"""Image-family benchmark: dataset build time, the digit classifier, and one search per family on ``+-``.

Prints, from one run:

(a) dataset build: rendering all 20,000 ``+-`` queries as 5 MNIST images (img2text) and their answers as
    3 images (text2img), best of 3 (MNIST read excluded, and reported apart);
(b) the answer-reading digit classifier: its accuracy on the held-apart MNIST digits, and whether it was
    trained now (with the time) or read from its cache;
(c) one search per family on the shipped ``+-`` spaces (``arith-img2text-addsub``, split 0.65;
    ``arith-text2img-addsub``, split 0.5) within the stated budget (trials x epochs), and the trial
    selected on validation: its test exact match (and per-character accuracy) against the seed rows:
    img2text 92.97% (65/35, no extra layer) and 95.25% (one extra encoder layer), per character;
    text2img pixel "accuracy" 85.18-86.25% beside our readable-answer exact match and the classifier's
    own accuracy.

A selected configuration ships the way every one does: ``mathtune best EXP --out FILE``, retrain it with
``mathtune train FAMILY --config FILE --out DIR``, then ``mathtune ship NAME DIR --search EXP --produced-by ...``.

    nice python bench/image_bench.py --part data                     # seconds
    nice python bench/image_bench.py --num-samples 2 --i2t-epochs 6 --t2i-epochs 5   # ~20 min here (docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED_I2T = {"no extra layer": 0.9297, "one extra layer": 0.9525}
SEED_T2I_PIXEL = (0.8518, 0.8625)


def mnist_md5(folder: Path) -> str:
    from mathtune.trainables.arith.mnist import IMAGES_FILE

    path = folder / f"{IMAGES_FILE}.gz"
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else "?"


def part_data() -> None:
    from mathtune.trainables.arith.image_data import build_image_arith
    from mathtune.trainables.arith.mnist import find_mnist_folder, load_mnist

    t0 = time.perf_counter()
    mnist = load_mnist()
    read = time.perf_counter() - t0
    print(f"(a) dataset build (MNIST t10k read and validated in {read:.2f} s from {find_mnist_folder()}):")
    for render, split, length in (("queries", 0.65, 5), ("answers", 0.5, 3)):
        times, walls = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            data = build_image_arith("+-", split, 0, render=render, mnist=mnist)
            walls.append(time.perf_counter() - t0)
            times.append(data.build_seconds)
        print(f"    {render:7s} 20,000 x {length} x 28 x 28 uint8 ({data.images.nbytes / 1e6:.0f} MB): rendering "
              f"{min(times):.3f} s (best of 3), whole dataset with the text split {min(walls):.3f} s")


def part_classifier() -> dict:
    from mathtune.trainables import get_family

    fam = get_family("arith-text2img")
    t0 = time.perf_counter()
    data = fam.build_data(fam.make_config({"split": 0.5}))
    m = data.classifier["metrics"]
    how = "read from its cache" if m["from_cache"] else f"trained now in {m['train_seconds']:.0f} s"
    print(f"(b) digit classifier: {data.classifier['accuracy']:.4f} on {m['n_eval']} held-apart MNIST digits, "
          f"minus/blank {m['eval_minus_blank_accuracy']:.4f}; {how} ({m['cache_path']}); text2img dataset "
          f"with classifier {time.perf_counter() - t0:.1f} s")
    return m


def _search(space: str, num_samples: int, epochs: int, storage: str, concurrent: int) -> tuple[dict, float, Path]:
    from mathtune.analysis.best import best_config
    from mathtune.search import SearchOptions, run_search

    t0 = time.perf_counter()
    outcome = run_search(space, SearchOptions(num_samples=num_samples, max_concurrent=concurrent,
                                              storage_path=storage, verbose=0, seed=0, dashboard=False,
                                              overrides={"epochs": epochs, "threads": 1}))
    wall = time.perf_counter() - t0
    best = best_config(outcome.experiment_dir)
    return best, wall, outcome.experiment_dir


def _trial_last(trial_dir: str | None) -> dict:
    """The trial's last reported row (Tune's result.json), {} when unreadable."""
    try:
        lines = (Path(str(trial_dir)) / "result.json").read_text().splitlines()
        return json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}


def _trial_wall(trial_dir: str | None) -> float:
    """Seconds the trial ran (Tune's time_total_s of its last result)."""
    return float(_trial_last(trial_dir).get("time_total_s", float("nan")))


def part_search(family: str, num_samples: int, epochs: int, storage: str, concurrent: int) -> None:
    from mathtune.trainables import get_family

    space = f"{family}-addsub"
    best, wall, exp = _search(space, num_samples, epochs, storage, concurrent)
    m = {**_trial_last(best.get("trial_dir")), **best["metrics"]}
    config = best["config"]
    fam = get_family(family)
    data = fam.make_config(config)
    from mathtune.trainables.arith.mnist import find_mnist_folder

    folder = find_mnist_folder(data.mnist_dir or None)
    data_line = (f"ops {data.ops}, split {data.split} (val_fraction {data.val_fraction}), data_seed "
                 f"{data.data_seed}, all 20,000 queries; MNIST t10k-images-idx3-ubyte.gz md5 {mnist_md5(folder)} "
                 f"(shared/data/mnist); test queries drawn from a disjoint MNIST pool")
    trial_wall = _trial_wall(best.get("trial_dir"))
    print(f"(c) {space}: {num_samples} trials x up to {epochs} epochs, TPE + ASHA, 1 CPU each, {concurrent} at a "
          f"time: {wall:.0f} s wall; experiment {exp}")
    print(f"    selected on validation: trial {best['trial_id']} epoch {best['epoch']}, val EM "
          f"{best[best['metric']]:.4f}; its trial ran {trial_wall:.0f} s")
    if family == "arith-img2text":
        print(f"    test exact match {m.get('test_exact_match', float('nan')):.4f}, per-character "
              f"{m.get('test_char_acc', float('nan')):.4f}")
        for row, value in SEED_I2T.items():
            print(f"      seed ({row}, per-character, selected on test): {value:.4f} -> our per-char "
                  f"{m.get('test_char_acc', float('nan')) - value:+.4f}, our exact match "
                  f"{m.get('test_exact_match', float('nan')) - value:+.4f}")
    else:
        print(f"    test readable-answer exact match {m.get('test_exact_match', float('nan')):.4f} (per position "
              f"{m.get('test_char_acc', float('nan')):.4f}), read by the digit classifier of accuracy "
              f"{m.get('classifier_acc', float('nan')):.4f}")
        print(f"    test pixel accuracy {m.get('test_pixel_acc', float('nan')):.4f} (binarised target), "
              f"{m.get('test_pixel_acc_exact', float('nan')):.4f} as Keras computed it; seed "
              f"{SEED_T2I_PIXEL[0]:.4f}-{SEED_T2I_PIXEL[1]:.4f}")
    print(f"    config: {json.dumps({k: config[k] for k in sorted(config) if k in fam.params and k != 'mnist_dir'})}")
    print(f"    data: {data_line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("data", "classifier", "img2text", "text2img", "all"), default="all")
    parser.add_argument("--num-samples", type=int, default=2, help="trials per search")
    parser.add_argument("--i2t-epochs", type=int, default=6, help="epoch cap of the img2text trials")
    parser.add_argument("--t2i-epochs", type=int, default=5, help="epoch cap of the text2img trials")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at a time (1 CPU each)")
    parser.add_argument("--storage-path", default=os.path.join(tempfile.gettempdir(), "mathtune-image-bench"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"mathtune image benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs (load average "
          f"{os.getloadavg()[0]:.1f}), torch {torch.__version__}, 1 thread per trial")
    t0 = time.perf_counter()
    if args.part in ("data", "all"):
        part_data()
    if args.part in ("classifier", "all"):
        part_classifier()
    if args.part in ("img2text", "all"):
        part_search("arith-img2text", args.num_samples, args.i2t_epochs, args.storage_path, args.max_concurrent)
    if args.part in ("text2img", "all"):
        part_search("arith-text2img", args.num_samples, args.t2i_epochs, args.storage_path, args.max_concurrent)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
