"""How much closer do twins conditioned on the direct descriptor heads come?

For the first ``--images`` test images it predicts θ̂ and the direct
descriptor heads (averaged over the image's symmetries), runs the twin
analysis of ``heteroagg evaluate`` twice, with twins drawn at θ̂ and with
twins conditioned on the heads (``--candidates`` per image), and plots the
distribution of the HCN's relative error of each route against the direct
head and the true-θ floor.  The figure of docs/results.md came from::

    python benchmarks/conditioned_twins.py --run runs/main18 --data runs/test2k \\
        --out docs/images/conditioned_twins.png
"""

from __future__ import annotations

import argparse

import numpy as np

from heteroagg.data import SyntheticDataset
from heteroagg.learn.evaluation import noisy_test_images, relative_error, twin_analysis
from heteroagg.learn.inference import TrainedRun
from heteroagg.twins import TWIN_DESCRIPTORS


def hcn_errors(run_dir: str, data_dir: str, images: int, k: int, candidates: int) -> dict:
    """|relative error| of the HCN per route, over the first ``images`` test images."""
    run = TrainedRun(run_dir, "cpu")
    dataset = SyntheticDataset(data_dir)
    items = np.flatnonzero(~dataset.failed[:])[:images]
    test = noisy_test_images(dataset, items, 0, True)
    prediction = run.predict(test.images, symmetrize=True)
    plain = twin_analysis(run, dataset, test, prediction, k, images, 0, True)
    conditioned = twin_analysis(
        run, dataset, test, prediction, k, images, 0, True, candidates=candidates
    )
    j = TWIN_DESCRIPTORS.index("hetero_coordination_number")
    truth = plain["truth"][:, j]
    routes = {
        f"twins at θ̂, mean of {k}": plain["twin_mean"][:, j],
        "twins at θ̂, one twin": plain["twin_single"][:, j],
        "conditioned twins, mean": conditioned["twin_mean"][:, j],
        "conditioned twins, one twin": conditioned["twin_single"][:, j],
        "direct HCN head": prediction.descriptors["hetero_coordination_number"],
        f"{k} samples at the true θ": plain["reference_mean"][:, j],
    }
    out = {}
    for label, estimate in routes.items():
        e = np.abs(relative_error(estimate, truth))
        out[label] = np.sort(e[np.isfinite(e)])
    return out


def plot(errors: dict, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = ["C0", "C0--", "C3", "C3--", "k:", "C2"]
    for (label, e), style in zip(errors.items(), styles, strict=True):
        share = np.arange(1, len(e) + 1) / len(e)
        ax.plot(100 * e, share, style, label=f"{label} (median {100 * np.median(e):.1f} %)")
    ax.axvline(15, color="0.6", lw=0.8)
    ax.text(16, 0.05, "15 % target", color="0.4", fontsize=8)
    ax.axhline(0.5, color="0.85", lw=0.8)
    ax.set(xlim=(0, 120), ylim=(0, 1))
    ax.set_xlabel("|relative error| of the HCN against the imaged aggregate (%)")
    ax.set_ylabel(f"share of the {len(next(iter(errors.values())))} test images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7.5, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--twins", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--out", default="conditioned_twins.png")
    args = parser.parse_args()
    errors = hcn_errors(args.run, args.data, args.images, args.twins, args.candidates)
    for label, e in errors.items():
        print(
            f"{label:32s} median {100 * np.median(e):5.1f} %  within 15 % {np.mean(e <= 0.15):.1%}"
        )
    name = args.run.rstrip("/").split("/")[-1]
    plot(errors, f"{name}: HCN through twins, conditioned on the direct heads or not", args.out)


if __name__ == "__main__":
    main()
