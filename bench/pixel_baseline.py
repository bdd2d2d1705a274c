"""What the reference's text2img pixel metric can tell apart: a blank image's score and the ceiling, per split.

The reference measured text2img with Keras's ``binary_accuracy`` against the grey MNIST targets (our
``pixel_acc_exact``): a pixel counts only where the target is exactly 0 or exactly 1 and the rounded prediction
equals it. This prints, for each split of arith-text2img's ``+-`` data (data seed 0, the family's pools):

* ``blank``: what an all-background answer image scores (the share of target pixels that are exactly 0);
* ``ceiling``: the share of target pixels that are exactly 0 or 1 (no image can score more);
* ``best per character``: the most any image drawn from the answer's characters alone can score, i.e. a model
  that knows every answer character but not which MNIST image of it the target holds. Each pixel of each
  character is inked where the training answers' images of that character are more often exactly 1 than
  exactly 0 (``learnt on train``), or where the test images themselves are (``bound``: no such model scores
  more on test);
* with ``--checkpoint`` (a run's ``best`` folder): the model's score at its own threshold (logit 0, the
  figure the family reports) and with its logits shifted, so one sees how the figure trades ink for
  background.

Example::

    python bench/pixel_baseline.py --splits 0.9 0.8 0.7 0.6 0.5 --checkpoint runs/t2i-s2/best
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mathtune.trainables.checkpoints import load_trained
from mathtune.trainables.arith.image_data import build_image_arith


def exact_fractions(images: np.ndarray) -> tuple[float, float]:
    """(share of pixels exactly 0, share exactly 255) of uint8 target images."""
    n = images.size
    return float((images == 0).sum()) / n, float((images == 255).sum()) / n


def best_per_character(data, part: str) -> tuple[float, float]:
    """(score of the per-character decision learnt on train, the in-sample bound on ``part``).

    Each answer position renders one character (padding renders blank); the decision for a pixel of
    character ``c`` is "ink" where images of ``c`` are more often exactly 255 than exactly 0 there.
    """
    idx, tr = data.part(part), data.part("train")
    images, chars = data.images[idx], data.y[idx]
    train_images, train_chars = data.images[tr], data.y[tr]
    learnt = bound = 0
    for c in np.unique(chars):
        sel = images[chars == c]
        zero, full = sel == 0, sel == 255
        bound += int(np.maximum(zero.sum(0), full.sum(0)).sum())
        ref = train_images[train_chars == c]
        ink = (ref == 255).mean(0) > (ref == 0).mean(0) if len(ref) else np.zeros(sel.shape[1:], bool)
        learnt += int(np.where(ink, full, zero).sum())
    return learnt / images.size, bound / images.size


def model_scores(checkpoint: Path, part: str, shifts: list[float]) -> tuple[dict, dict[float, float]]:
    _, cfg, model, data = load_trained(checkpoint, family="arith-text2img", device="cpu")
    idx = data.part(part)
    target = torch.from_numpy(data.images[idx])
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(data.x[idx[s:s + 512]]), logits=True).float()
                            for s in range(0, len(idx), 512)])
    zero, one = target == 0, target == 255
    scores = {b: float(((zero & (logits <= b)) | (one & (logits > b))).float().mean()) for b in shifts}
    return cfg, scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=float, nargs="+", default=[0.9, 0.8, 0.7, 0.6, 0.5])
    ap.add_argument("--part", choices=("val", "test"), default="test")
    ap.add_argument("--checkpoint", type=Path, help="a text2img run's best/ (or last/) checkpoint folder")
    ap.add_argument("--shifts", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0],
                    help="logit thresholds to score the checkpoint at (0 = the model's own output)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    print(f"Keras-style pixel accuracy (pixel_acc_exact) on the {args.part} answer images, arith +- (data seed 0)")
    print("| split | queries | blank image | best per character, learnt on train | best per character, bound "
          "| ceiling (pixels exactly 0 or 1) |")
    print("|---|---|---|---|---|---|")
    for split in args.splits:
        data = build_image_arith("+-", split, 0, render="answers")
        images = data.images[data.part(args.part)]
        blank, full = exact_fractions(images)
        learnt, bound = best_per_character(data, args.part)
        print(f"| {split:.2f} | {len(images)} | {blank:.2%} | {learnt:.2%} | {bound:.2%} | {blank + full:.2%} |",
              flush=True)
    if args.checkpoint is not None:
        if not (args.checkpoint / "state.pt").is_file():
            print(f"pixel_baseline: {args.checkpoint}: no state.pt (expected a run's best/ or last/ folder)",
                  file=sys.stderr)
            return 2
        cfg, scores = model_scores(args.checkpoint, args.part, args.shifts)
        print(f"\n{args.checkpoint} (split {cfg.split}), {args.part}: ink where logit > threshold")
        print("| threshold | " + " | ".join(f"{b:+.1f}" for b in args.shifts) + " |")
        print("|---|" + "---|" * len(args.shifts))
        print("| pixel_acc_exact | " + " | ".join(f"{scores[b]:.2%}" for b in args.shifts) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
