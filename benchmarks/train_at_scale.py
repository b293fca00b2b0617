"""Train with a larger dataset on one GPU under a fixed time budget.

The script generates ``--items`` training items from the default prior
(root seed 1, so the first 60 000 are the CPU run's items), measures the
network's training throughput on the device, sizes the epochs so that the
cosine schedule ends inside ``--minutes``, and trains the CPU full run's
recipe (batch 64, learning rate 2e-3, Gaussian head, descriptor heads) with
the image cache in the device's memory.  The run folder is copied to
``--out`` for evaluation elsewhere.  The "GPU run" of docs/results.md was made
with::

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
from heteroagg.learn.torch_device import torch_device
from heteroagg.learn.training import training_images_per_second
from heteroagg.model import ModelParams

HEADS = ("hetero_coordination_number", "coordination_number", "radius_of_gyration")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=250_000)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cuda", help="cuda (cpu: a dry run of the script)")
    args = parser.parse_args()
    device = torch_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print("device:", name, flush=True)

    data = args.work / "train"
    start = time.perf_counter()
    summary = generate(default_config(), args.items, data, seed=1, workers=args.workers)
    seconds = time.perf_counter() - start
    print(f"generated {args.items} items in {seconds:.1f} s "
          f"({args.items / seconds:.0f} images/s, {args.workers} workers, "
          f"{summary.bytes_per_image / 1e3:.1f} kB per image)", flush=True)  # fmt: skip

    config = TrainConfig(
        seed=0, gaussian=True, descriptor_heads=HEADS, cache="device", workers=args.workers
    )
    shape = tuple(default_config().imaging.shape)
    n_outputs = len(ModelParams.field_names()) + len(HEADS)
    rate = training_images_per_second(config, shape, n_outputs, args.device, 10.0)
    train_items = 0.95 * args.items
    # 0.7: the data path (gather, noise, flips), validation and checkpoints.
    epochs = max(2, int(0.7 * rate * 60 * args.minutes / train_items))
    print(f"network alone: {rate:.0f} training images/s; planning {epochs} epochs", flush=True)

    config = TrainConfig(**{**config.to_dict(), "epochs": epochs, "max_minutes": args.minutes})
    run = args.work / "run"
    start = time.perf_counter()
    result = train(data, run, config, device=args.device, progress=False)
    seconds = time.perf_counter() - start
    print(f"trained {result.epochs} epochs in {seconds:.1f} s (stopped: {result.stopped}); "
          f"best validation loss {result.best_val_loss}", flush=True)  # fmt: skip
    shutil.copytree(run, args.out, dirs_exist_ok=True)
    print(json.dumps({"items": args.items, "epochs": epochs, "probe_images_per_s": rate}))


if __name__ == "__main__":
    main()
