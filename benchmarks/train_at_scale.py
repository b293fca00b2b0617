"""Train with a larger dataset on one GPU under a fixed time budget, and evaluate there.

The script generates ``--items`` training items from the default prior
(root seed 1, so the first items are those of the CPU runs' training sets),
measures the network's training throughput on the device, sizes the epochs
so that the cosine schedule ends inside ``--minutes``, and trains with the
image cache in the device's memory.  The recipe is the TOML file given by
``--config`` (``benchmarks/configs/muon_stem.toml``: the recipe of the best
run within the CPU budget); without one, the defaults of ``TrainConfig``
with a Gaussian head and the three descriptor heads.

With ``--test-items`` it also generates that many test items (root seed 2,
the CPU runs' ``test2k``) and evaluates the run on them, symmetrized, with
8 twins for the first ``--twin-images`` images, as ``heteroagg evaluate``
does on the CPU; the report lands in ``eval`` inside ``--out``.  The run folder is copied
to ``--out``, and ``scale.json`` there sums up the run and its R².  One call on a
GPU machine::

    python benchmarks/train_at_scale.py --config benchmarks/configs/muon_stem.toml \\
        --items 300000 --minutes 6 --test-items 2000 --work /tmp/scale --out /tmp/scale/out

The "GPU run" of docs/results.md was made, with the recipe of its time (no
``--config``), by::

    python benchmarks/train_at_scale.py --items 250000 --minutes 3 --work /tmp/scale --out RUN
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

from heteroagg.data import generate
from heteroagg.data.config import default_config
from heteroagg.learn import TrainConfig, train
from heteroagg.learn.evaluation import evaluate
from heteroagg.learn.torch_device import torch_device
from heteroagg.learn.training import training_images_per_second
from heteroagg.model import ModelParams

HEADS = ("hetero_coordination_number", "coordination_number", "radius_of_gyration")

#: Root seeds of the CPU runs' training and test sets.
TRAIN_SEED, TEST_SEED = 1, 2


def _generate(items: int, out: Path, seed: int, workers: int) -> None:
    start = time.perf_counter()
    summary = generate(default_config(), items, out, seed=seed, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    print(f"generated {items} items (seed {seed}) in {seconds:.1f} s "
          f"({items / seconds:.0f} images/s, {workers} workers, "
          f"{summary.bytes_per_image / 1e3:.1f} kB per image)", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="TrainConfig TOML (the recipe)")
    parser.add_argument("--items", type=int, default=250_000)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--test-items", type=int, default=0, help="0: no evaluation")
    parser.add_argument("--twin-images", type=int, default=500)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cuda", help="cuda (cpu: a dry run of the script)")
    args = parser.parse_args()
    if args.items < 2 or args.minutes <= 0 or args.test_items < 0 or args.twin_images < 0:
        parser.error("--items must be >= 2, --minutes > 0, --test-items and --twin-images >= 0")
    device = torch_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print("device:", name, flush=True)

    data = args.work / "train"
    _generate(args.items, data, TRAIN_SEED, args.workers)
    if args.config is not None:
        recipe = TrainConfig.from_toml(args.config).to_dict()
    else:
        recipe = {"seed": 0, "gaussian": True, "descriptor_heads": HEADS}
    config = TrainConfig.from_dict({**recipe, "cache": "device", "workers": args.workers})
    shape = tuple(default_config().imaging.shape)
    n_outputs = len(ModelParams.field_names()) + len(config.descriptor_heads)
    rate = training_images_per_second(config, shape, n_outputs, args.device, 10.0)
    train_items = (1.0 - config.val_fraction) * args.items
    # 0.7: the data path (gather, noise, flips), validation and checkpoints.
    epochs = max(2, int(0.7 * rate * 60 * args.minutes / train_items))
    print(f"network alone: {rate:.0f} training images/s; planning {epochs} epochs", flush=True)

    config = TrainConfig.from_dict(
        {**config.to_dict(), "epochs": epochs, "max_minutes": args.minutes}
    )
    run = args.work / "run"
    start = time.perf_counter()
    result = train(data, run, config, device=args.device, progress=False)
    train_seconds = time.perf_counter() - start
    print(f"trained {result.epochs} epochs in {train_seconds:.1f} s (stopped: {result.stopped}); "
          f"best validation loss {result.best_val_loss}", flush=True)  # fmt: skip
    shutil.copytree(run, args.out, dirs_exist_ok=True)
    summary = {
        "device": name,
        "items": args.items,
        "epochs": epochs,
        "probe_images_per_s": rate,
        "train_seconds": train_seconds,
    }
    if args.test_items:
        test = args.work / "test"
        _generate(args.test_items, test, TEST_SEED, args.workers)
        start = time.perf_counter()
        report = evaluate(
            run,
            test,
            args.out / "eval",
            twins=8,
            twin_images=min(args.twin_images, args.test_items),
            device=args.device,
            progress=False,
            symmetrize=True,
        )
        summary["evaluate_seconds"] = time.perf_counter() - start
        summary["r2"] = {param: row["r2"] for param, row in report["parameters"].items()}
        hcn = report["descriptors"].get("hetero_coordination_number")
        if hcn is not None:
            summary["hcn_twin_mean_median_error"] = hcn["twin_mean"]["median_abs"]
        print(f"evaluated {args.test_items} test images in {summary['evaluate_seconds']:.1f} s",
              flush=True)  # fmt: skip
    print(json.dumps(summary))
    (args.out / "scale.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
