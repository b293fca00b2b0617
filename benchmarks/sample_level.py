"""How well do several images of one sample give its parameters and its HCN?

A *sample* here is a set of aggregates that share the material parameters θ
(every parameter but ``n_particles``, which each aggregate draws from the
prior, as aggregates of one powder differ in size).  For ``--groups``
samples drawn from the default prior, ``--per-group`` aggregates are
sampled and imaged as the datasets image them (random orientation, shot
noise at a dose drawn from the dose prior).  A trained run predicts θ̂ for
every image, averaged over the image's symmetries.

For blocks of n images of one sample (n = 1, 2, 4, …; disjoint blocks, at
most ``--blocks`` per sample) it reports:

- the R² of the shared parameters pooled over the block: the
  precision-weighted mean of the images' normalised estimates (each
  image's predictive standard deviation gives its weight), how often the
  pooled one-sigma band holds the truth, and the share of an image's error
  that all images of its sample have in common (intraclass correlation);
  and the band's coverage once widened by those shares
  (``pool_sample(..., shared_error=...)``), fitted on the first half of
  the samples and checked on the second;
- the sample's mean HCN (over its aggregates), against the truth: the mean
  over ``--truth-samples`` aggregates drawn at the sample's θ, each with
  its own ``n_particles`` from the prior.  Routes: twins at the pooled θ̂
  (each image's own estimated ``n_particles``), the same conditioned on
  each image's direct descriptor heads (``--candidates`` per image, as
  ``heteroagg predict --sample --twin-candidates`` draws them), the mean of
  per-image twins, the direct HCN head averaged over the block, the imaged
  aggregates' own HCN (what a perfect per-image reading of the HCN would
  give) and twins at the true θ with the true ``n_particles`` (what a
  perfect reading of θ would give).

No setting is chosen on these samples.  The figure and table of
docs/results.md came from::

    python benchmarks/sample_level.py --run runs/main18 --data runs/test2k \\
        --out docs/images/sample_level.png --json sample_level.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from heteroagg.aggregate import sample_aggregates
from heteroagg.data import SyntheticDataset
from heteroagg.data.config import ImagingConfig
from heteroagg.data.torch_dataset import draw_dose, shot_noise
from heteroagg.learn.evaluation import parameter_metrics, relative_error
from heteroagg.learn.inference import TrainedRun
from heteroagg.pooling import fit_shared_error, pool_sample
from heteroagg.rng import derive_seed
from heteroagg.stem import HaadfRenderer
from heteroagg.twins import TWIN_DESCRIPTORS, descriptor_row, head_weights, twin_params

# streams of a sample's seed
IMAGE_STREAM, TRUTH_STREAM, TWIN_STREAM = 0, 1, 2
RETRIES = 8


def block_sizes(per_group: int) -> list[int]:
    """1, 2, 4, … up to ``per_group``."""
    sizes = [1]
    while sizes[-1] * 2 <= per_group:
        sizes.append(sizes[-1] * 2)
    return sizes


def blocks(per_group: int, n: int, most: int) -> list[np.ndarray]:
    """Disjoint blocks of ``n`` consecutive images of a sample, at most ``most``."""
    return [np.arange(b * n, (b + 1) * n) for b in range(min(most, per_group // n))]


def with_size(theta, n_particles: int):
    """``theta`` with another ``n_particles``."""
    return dataclasses.replace(theta, n_particles=int(n_particles))


def build(params: list, seeds: list[int]) -> list | None:
    """Aggregates of ``params``, a failed one retried with other seeds from its own;
    None if one still fails."""
    aggs = sample_aggregates(params, seeds, threads=None, on_error="none")
    for attempt in range(1, RETRIES + 1):
        todo = [k for k, a in enumerate(aggs) if a is None]
        if not todo:
            break
        retry = [derive_seed(seeds[k], attempt) for k in todo]
        built = sample_aggregates([params[k] for k in todo], retry, threads=None,
                                  on_error="none")  # fmt: skip
        for k, a in zip(todo, built, strict=True):
            aggs[k] = a
    return None if any(a is None for a in aggs) else aggs


def mean_hcn(params: list, seeds: list[int]) -> float:
    """Mean HCN over aggregates of ``params`` (failures skipped)."""
    aggs = sample_aggregates(params, seeds, threads=None, on_error="none")
    values = [a.descriptors().hetero_coordination_number for a in aggs if a is not None]
    return float(np.mean(values))


def conditioned_hcn(params, seeds: list[int], heads: dict) -> float:
    """HCN of candidates at ``params``, weighted by agreement with one image's heads."""
    aggs = [a for a in sample_aggregates(params, seeds, threads=None, on_error="none") if a]
    rows = np.array([descriptor_row(a) for a in aggs], dtype=float)
    weights = head_weights(rows, heads)
    return float(weights @ rows[:, TWIN_DESCRIPTORS.index("hetero_coordination_number")])


def images_of_samples(run: TrainedRun, imaging: ImagingConfig, root: int, groups: int,
                      per_group: int) -> dict:  # fmt: skip
    """θ of each sample, and each image's true size and HCN and its prediction.

    Samples are drawn from the prior in turn; one whose aggregates cannot all
    be built (as some θ of the prior cannot) is skipped and counted.
    """
    space = run.space
    renderer = HaadfRenderer(
        pixel_size=imaging.pixel_size, shape=imaging.shape, support=imaging.support or None,
        orientation_spread=imaging.orientation_spread, extrapolate=imaging.extrapolate,
    )  # fmt: skip
    thetas: list = []
    skipped = 0
    sizes = np.zeros((groups, per_group), dtype=int)
    hcn = np.zeros((groups, per_group))
    p = len(run.parameters)
    normalized = np.zeros((groups, per_group, p))
    std = np.zeros((groups, per_group, p))
    heads = {d: np.zeros((groups, per_group, 2)) for d in run.descriptor_heads}
    start = time.perf_counter()
    q = 0
    while len(thetas) < groups:
        theta, stream = space.sample(root, q), derive_seed(derive_seed(root, q), IMAGE_STREAM)
        q += 1
        params = [with_size(theta, space.sample(stream, j).n_particles) for j in range(per_group)]
        aggs = build(params, [derive_seed(derive_seed(stream, j), 1) for j in range(per_group)])
        if aggs is None:
            skipped += 1
            continue
        g = len(thetas)
        thetas.append(theta)
        sizes[g] = [a.n_particles for a in aggs]
        hcn[g] = [a.descriptors().hetero_coordination_number for a in aggs]
        render_seeds = [derive_seed(derive_seed(stream, j), 0) for j in range(per_group)]
        images, _, _ = renderer.batch(aggs, render_seeds, threads=0)
        noisy = np.stack([
            shot_noise(np.asarray(im), draw_dose(imaging.dose, s), imaging.pixel_size, s)
            for im, s in zip(images, render_seeds, strict=True)
        ])  # fmt: skip
        prediction = run.predict(noisy, symmetrize=True)
        normalized[g], std[g] = prediction.normalized, prediction.normalized_std
        for d in heads:
            heads[d][g, :, 0] = prediction.descriptors[d]
            heads[d][g, :, 1] = prediction.descriptors_std[d]
        if (g + 1) % 20 == 0:
            print(f"  {g + 1}/{groups} samples imaged, {time.perf_counter() - start:.0f} s")
    print(f"  {skipped} samples skipped: an aggregate could not be built")
    return {"thetas": thetas, "skipped": skipped, "sizes": sizes, "hcn": hcn,
            "normalized": normalized, "std": std,
            **{f"head_{d}": v for d, v in heads.items()}}  # fmt: skip


def held_out_coverage(normalized: np.ndarray, std: np.ndarray, true_normalized: np.ndarray,
                      names: list[str], most: int) -> dict:  # fmt: skip
    """How often the pooled one-sigma band holds the truth on the second half of the
    samples, with each parameter's shared share of the error fitted on the first half
    (``pool_sample(..., shared_error=...)``), per block size: (fitted shares, coverage)."""
    groups, per_group, _ = normalized.shape
    half = groups // 2
    rho = fit_shared_error(normalized[:half], std[:half], true_normalized[:half], names)
    coverage: dict = {name: [] for name in rho}
    for n in block_sizes(per_group):
        inside = []
        for g in range(half, groups):
            for idx in blocks(per_group, n, most):
                pool = pool_sample(normalized[g, idx], std[g, idx], names, shared_error=rho)
                error = np.abs(pool.normalized[0] - true_normalized[g])
                inside.append(error <= pool.normalized_std[0])
        share = np.mean(inside, axis=0)
        for name in rho:
            coverage[name].append(float(share[names.index(name)]))
    return {"shared_error_fitted": rho, "in_band_widened": coverage}


def analyse(run: TrainedRun, seen: dict, root: int, per_group: int, most: int,
            twins: int, truth_samples: int, candidates: int = 0) -> dict:  # fmt: skip
    """R² of the pooled parameters and relative errors of the sample's HCN, per block size."""
    space = run.space
    names = list(run.parameters)
    shared = [k for k, n in enumerate(names) if n != "n_particles"]
    size_col = names.index("n_particles")
    thetas = seen["thetas"]
    groups = len(thetas)
    truth = np.zeros(groups)
    per_image_twins = np.zeros((groups, per_group))
    start = time.perf_counter()
    for g, theta in enumerate(thetas):
        stream = derive_seed(derive_seed(root, g), TRUTH_STREAM)
        params = [with_size(theta, space.sample(stream, j).n_particles)
                  for j in range(truth_samples)]  # fmt: skip
        truth[g] = mean_hcn(params, [derive_seed(stream, truth_samples + j)
                                     for j in range(truth_samples)])  # fmt: skip
        for i in range(per_group):
            twin = twin_params(space, seen["normalized"][g, i])
            s = derive_seed(derive_seed(derive_seed(root, g), TWIN_STREAM), i)
            per_image_twins[g, i] = mean_hcn([twin] * 16, [derive_seed(s, j) for j in range(16)])
    print(f"  truths and per-image twins: {time.perf_counter() - start:.0f} s")
    out: dict = {"block_sizes": [], "r2": {}, "in_band": {}, "hcn_errors": {}, "hcn_signed": {}}
    true_norm = np.array([space.normalize(t) for t in thetas])
    out["shared_error"] = fit_shared_error(seen["normalized"], seen["std"], true_norm, names)
    out.update(held_out_coverage(seen["normalized"], seen["std"], true_norm, names, most))
    for n in block_sizes(per_group):
        parts = blocks(per_group, n, most)
        estimate, reference, direct, imaged, per_image = [], [], [], [], []
        conditioned = []
        pooled_norm, pooled_std, pooled_true = [], [], []
        for g, theta in enumerate(thetas):
            base = derive_seed(derive_seed(root, g), 100 + n)
            for b, idx in enumerate(parts):
                pool = pool_sample(seen["normalized"][g, idx], seen["std"][g, idx], names)
                mu = pool.normalized[0]
                pooled_norm.append(mu)
                pooled_std.append(pool.normalized_std[0])
                pooled_true.append(true_norm[g])
                each = -(-twins // n)
                params, refs = [], []
                for i in idx:
                    z = mu.copy()
                    z[size_col] = seen["normalized"][g, i, size_col]
                    params += [twin_params(space, z)] * each
                    refs += [with_size(theta, seen["sizes"][g, i])] * each
                seeds = [derive_seed(derive_seed(base, b), j) for j in range(len(params))]
                ref_seeds = [derive_seed(derive_seed(base, 1000 + b), j)
                             for j in range(len(refs))]  # fmt: skip
                estimate.append(mean_hcn(params, seeds))
                if candidates:
                    per_image_hcn = []
                    for i in idx:
                        z = mu.copy()
                        z[size_col] = seen["normalized"][g, i, size_col]
                        s = derive_seed(derive_seed(base, 2000 + b), int(i))
                        image_heads = {
                            d: tuple(seen[f"head_{d}"][g, i]) for d in run.descriptor_heads
                        }
                        per_image_hcn.append(conditioned_hcn(
                            [twin_params(space, z)] * candidates,
                            [derive_seed(s, j) for j in range(candidates)], image_heads,
                        ))  # fmt: skip
                    conditioned.append(np.mean(per_image_hcn))
                reference.append(mean_hcn(refs, ref_seeds))
                direct.append(seen["head_hetero_coordination_number"][g, idx, 0].mean())
                imaged.append(seen["hcn"][g, idx].mean())
                per_image.append(per_image_twins[g, idx].mean())
        t = np.repeat(truth, len(parts))
        routes = {
            "twins at the pooled θ̂": estimate,
            **({"conditioned twins at the pooled θ̂": conditioned} if candidates else {}),
            "per-image twins, averaged": per_image,
            "direct HCN head, averaged": direct,
            "the imaged aggregates' own HCN": imaged,
            "twins at the true θ": reference,
        }
        out["block_sizes"].append(n)
        for label, values in routes.items():
            e = relative_error(np.asarray(values), t)
            e = e[np.isfinite(e)]
            out["hcn_errors"].setdefault(label, []).append(np.sort(np.abs(e)).tolist())
            out["hcn_signed"].setdefault(label, []).append(float(np.median(e)))
        est_norm, true_block = np.array(pooled_norm), np.array(pooled_true)
        est_phys = space.denormalize(np.clip(est_norm, 0, 1))
        true_phys = space.denormalize(true_block)
        z = (est_norm - true_block) / np.array(pooled_std)
        for k in shared:
            name = names[k]
            r2 = parameter_metrics(true_phys[name], est_phys[name])["r2"]
            out["r2"].setdefault(name, []).append(r2)
            out["in_band"].setdefault(name, []).append(float(np.mean(np.abs(z[:, k]) <= 1)))
        print(f"  n = {n}: {len(t)} blocks, {time.perf_counter() - start:.0f} s")
    out["groups"] = groups
    out["skipped"] = seen["skipped"]
    out["per_group"] = per_group
    return out


def report(out: dict) -> None:
    """Print the R² and HCN tables."""
    sizes = out["block_sizes"]
    print("R² of the pooled shared parameters, by images per sample", sizes)
    for name, values in out["r2"].items():
        print(f"  {name:12s} " + "  ".join(f"{v:6.3f}" for v in values))
    print("share of the samples whose truth lies in the pooled one-sigma band (nominal 68 %)")
    for name, values in out["in_band"].items():
        print(f"  {name:12s} " + "  ".join(f"{v:6.0%}" for v in values))
    print("share of an image's error variance common to its sample (intraclass correlation)")
    print("  " + "  ".join(f"{n} {v:.2f}" for n, v in out["shared_error"].items()))
    print("the same band widened by shares fitted on the first half, on the second half")
    for name, values in out["in_band_widened"].items():
        print(f"  {name:12s} " + "  ".join(f"{v:6.0%}" for v in values))
    print("HCN of the sample: median |relative error| (within 15 %), median signed error")
    for label, errors in out["hcn_errors"].items():
        cells = [
            f"{100 * np.median(e):5.1f} % ({np.mean(np.asarray(e) <= 0.15):4.0%}) {100 * s:+5.1f} %"
            for e, s in zip(errors, out["hcn_signed"][label], strict=True)
        ]
        print(f"  {label:36s} " + " | ".join(cells))


def plot(out: dict, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = out["block_sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, values in out["r2"].items():
        style = "-o" if name in ("frac_w", "radius_w") else ":."
        left.plot(sizes, values, style, label=name, ms=4)
    left.axhline(0.9, color="0.6", lw=0.8)
    left.set(xscale="log", ylim=(0, 1), xlabel="images of the sample", ylabel="R² (pooled θ̂)")
    left.set_xticks(sizes, [str(n) for n in sizes])
    left.legend(fontsize=7, loc="lower right")
    styles = {
        "twins at the pooled θ̂": "C3-o",
        "conditioned twins at the pooled θ̂": "C1-s",
        "per-image twins, averaged": "C0--.",
        "direct HCN head, averaged": "k:.",
        "the imaged aggregates' own HCN": "C2-.",
        "twins at the true θ": "C2:o",
    }
    for label, errors in out["hcn_errors"].items():
        style = styles[label]
        right.plot(sizes, [100 * np.median(e) for e in errors], style, label=label, ms=4)
    right.axhline(15, color="0.6", lw=0.8)
    right.text(sizes[-1], 16, "15 %", color="0.4", fontsize=8, ha="right")
    right.set(xscale="log", ylim=(0, None), xlabel="images of the sample",
              ylabel="median |relative error| of the sample's HCN (%)")  # fmt: skip
    right.set_xticks(sizes, [str(n) for n in sizes])
    right.legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True, help="a dataset whose imaging settings to use")
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--per-group", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--twins", type=int, default=128, help="twins per block")
    parser.add_argument("--truth-samples", type=int, default=512)
    parser.add_argument(
        "--candidates", type=int, default=64, help="conditioned twins' candidates per image"
    )
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--out", default="sample_level.png")
    parser.add_argument("--json")
    parser.add_argument("--save", help="an .npz for the images' predictions and truths")
    args = parser.parse_args()
    if args.groups < 4 or args.per_group < 2:
        # the shared error is fitted on half the samples, each seen at least twice
        parser.error("--groups must be >= 4 and --per-group >= 2")
    run = TrainedRun(args.run, "cpu")
    imaging = ImagingConfig.from_config(SyntheticDataset(args.data).index["config"]["imaging"])
    seen = images_of_samples(run, imaging, args.seed, args.groups, args.per_group)
    if args.save:
        thetas = np.array([run.space.normalize(t) for t in seen["thetas"]])
        arrays = {k: v for k, v in seen.items() if isinstance(v, np.ndarray)}
        np.savez(args.save, true_normalized=thetas, **arrays)
    out = analyse(run, seen, args.seed, args.per_group, args.blocks, args.twins,
                  args.truth_samples, args.candidates)  # fmt: skip
    report(out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)
    name = args.run.rstrip("/").split("/")[-1]
    plot(out, f"{name}: a sample imaged n times ({args.groups} samples)", args.out)


if __name__ == "__main__":
    main()
