"""Writing an evaluation report: markdown, JSON and PNG plots."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from heteroagg._atomic import write_text_atomic
from heteroagg.learn.evaluation import relative_error
from heteroagg.twins import DESCRIPTOR_LABELS, TWIN_DESCRIPTORS


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def _binned(
    x: np.ndarray, y: np.ndarray, edges: np.ndarray, minimum: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``y`` in each bin of ``x`` that holds at least ``minimum`` finite values."""
    centres, values = [], []
    for lo, hi in itertools.pairwise(edges):
        chosen = (x >= lo) & (x < hi) & np.isfinite(y)
        if chosen.sum() >= minimum:
            centres.append(np.sqrt(lo * hi) if lo > 0 else 0.5 * (lo + hi))
            values.append(float(np.mean(y[chosen])))
    return np.array(centres), np.array(values)


def _quarter_ratios(quarters: dict[str, dict[str, list[float]]], names: list[str]) -> np.ndarray:
    """RMSE in the highest quarter over that in the lowest; rows: the error's parameter.

    NaN where both are 0, inf where only the lowest quarter's is.
    """
    rmse = np.array([[quarters[p][q] for q in names] for p in names], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return rmse[..., -1] / rmse[..., 0]


def _plots(out: Path, e: Any, report: dict) -> list[str]:
    trained, dataset, test, prediction = e.trained, e.dataset, e.test, e.prediction
    quarters = report["error_by_quarter"]
    true_norm, twin = e.true_norm, e.twin
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    written = []
    names = trained.parameters
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        true = dataset.params[name][:][test.items]
        pred = prediction.params[name]
        if prediction.params_low is not None:
            err = np.stack(
                [pred - prediction.params_low[name], prediction.params_high[name] - pred]
            )
            ax.errorbar(
                true, pred, yerr=np.clip(err, 0, None), fmt="none", lw=0.3, alpha=0.3, color="0.5"
            )
        ax.scatter(true, pred, s=3, alpha=0.5)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"{name}   R² = {_fmt(report['parameters'][name]['r2'])}")
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "parameters.png", dpi=110)
    plt.close(fig)
    written.append("parameters.png")

    if len(twin["truth"]):  # no histograms of twins that were not drawn (twin_images = 0)
        fig, axes = plt.subplots(2, 3, figsize=(13, 7))
        if twin["candidates"]:  # the estimate weighs M candidates by the heads
            twin_label = f"{twin['candidates']} candidates weighed by the heads"
            mean_over = "relative error of the (weighted) mean"
        else:
            twin_label, mean_over = "K twins at predicted θ̂", "relative error of the mean over K"
        for ax, (j, name) in zip(axes.flat, enumerate(TWIN_DESCRIPTORS), strict=True):
            truth = twin["truth"][:, j]
            e_twin = relative_error(twin["twin_mean"][:, j], truth)
            e_ref = relative_error(twin["reference_mean"][:, j], truth)
            bins = np.linspace(-0.6, 0.6, 41)
            ax.hist(
                np.clip(e_ref[np.isfinite(e_ref)], -0.6, 0.6),
                bins,
                alpha=0.5,
                label="K samples at the true θ",
            )
            ax.hist(
                np.clip(e_twin[np.isfinite(e_twin)], -0.6, 0.6),
                bins,
                alpha=0.5,
                label=twin_label,
            )
            for v in (-0.15, 0.15):
                ax.axvline(v, color="k", ls=":", lw=0.8)
            ax.set_title(DESCRIPTOR_LABELS[name])
            ax.set_xlabel(mean_over)
        axes.flat[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "descriptors.png", dpi=110)
        plt.close(fig)
        written.append("descriptors.png")

    abs_err = np.abs(np.clip(prediction.normalized, 0.0, 1.0) - true_norm)
    n_true = dataset.params["n_particles"][:][test.items]
    minimum = int(np.clip(len(n_true) // 16, 1, 5))  # points per bin: fewer for small test sets
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = [
        (n_true, np.geomspace(max(n_true.min(), 1), n_true.max() + 1, 9), "N (true)", True),
        (
            test.outside,
            np.array([0, 1e-9, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
            "volume share outside the field",
            False,
        ),
        (
            test.doses,
            np.geomspace(np.nanmin(test.doses), np.nanmax(test.doses) * 1.001, 9)
            if np.isfinite(test.doses).any()
            else np.array([0.0, 1.0]),
            "dose (e/Å²)",
            True,
        ),
    ]
    for ax, (x, edges, label, log) in zip(axes, panels, strict=True):
        for k, name in enumerate(names):
            cx, cy = _binned(x, abs_err[:, k], edges, minimum)
            if cx.size:
                ax.plot(cx, cy, "o-", ms=3, label=name)
        if not ax.lines:
            ax.text(0.5, 0.5, "too few test images in any bin", ha="center",
                    transform=ax.transAxes)  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel("mean |error| (normalised)")
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if axes[0].lines:
        axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "failure_modes.png", dpi=110)
    plt.close(fig)
    written.append("failure_modes.png")

    if report["uncertainty"]:
        levels = report["coverage_levels"]
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
        for name in names:
            ax.plot(levels, report["parameters"][name]["coverage_curve"], "o-", ms=3, label=name)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("nominal coverage of the Gaussian interval")
        ax.set_ylabel("share of test images inside it")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "coverage.png", dpi=110)
        plt.close(fig)
        written.append("coverage.png")

    ratio = _quarter_ratios(quarters, names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(names), 0.9 + 0.5 * len(names)))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log2(ratio)
    finite = np.abs(log_ratio[np.isfinite(log_ratio)])
    limit = max(1.0, float(finite.max())) if finite.size else 1.0
    shown = ax.imshow(np.clip(log_ratio, -limit, limit), cmap="RdBu_r", vmin=-limit, vmax=limit)
    for (i, j), value in np.ndenumerate(ratio):
        dark = abs(math.log2(value)) > 0.6 * limit if value > 0 else False
        ax.text(
            j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if dark else "k"
        )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("items ranked by this true parameter")
    ax.set_ylabel("error of")
    fig.colorbar(shown, ax=ax, label="log2 RMSE, highest / lowest quarter")
    fig.tight_layout()
    fig.savefig(out / "error_by_quarter.png", dpi=110)
    plt.close(fig)
    written.append("error_by_quarter.png")

    histories = sorted(Path(trained.path).glob("member-*/metrics.csv"))
    if histories:
        import csv

        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for path in histories:
            with path.open() as f:
                rows = list(csv.DictReader(f))
            epochs = [int(r["epoch"]) for r in rows]
            member = path.parent.name
            axes[0].plot(
                epochs, [float(r["train_loss"]) for r in rows], "--", label=f"{member} train"
            )
            axes[0].plot(epochs, [float(r["val_loss"]) for r in rows], "-", label=f"{member} val")
            if path == histories[0]:
                for name in names:
                    axes[1].plot(epochs, [float(r[f"r2_{name}"]) for r in rows], label=name)
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("loss")
        axes[0].legend(fontsize=7)
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("validation R² (normalised)")
        axes[1].set_ylim(-0.1, 1.0)
        axes[1].legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out / "training.png", dpi=110)
        plt.close(fig)
        written.append("training.png")

    if report.get("calibration"):
        written.append(_calibration_plot(out, report["calibration"], plt))

    show = min(6, len(test.items))
    fig, axes = plt.subplots(1, show, figsize=(3.2 * show, 3.6), squeeze=False)
    for ax, k in zip(axes[0], range(show), strict=True):
        ax.imshow(test.images[k], cmap="gray")
        i = int(test.items[k])
        n_t = dataset.params["n_particles"][i]
        f_t = dataset.params["frac_w"][i]
        ax.set_title(
            f"N {n_t:.0f} → {prediction.params['n_particles'][k]:.0f}\n"
            f"f_W {f_t:.2f} → {prediction.params['frac_w'][k]:.2f}",
            fontsize=9,
        )
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "examples.png", dpi=100)
    plt.close(fig)
    written.append("examples.png")
    return written


def _calibration_plot(out: Path, sweep: dict, plt: Any) -> str:
    """R² against the scale, the shift and the read noise of the images, a line per parameter."""
    unshifted = sweep["offsets"].index(0.0)
    noise_r2 = {
        name: [sweep["offset_r2"][name][unshifted], *values]
        for name, values in sweep["read_noise_r2"].items()
    }
    panels = (
        (sweep["scales"], sweep["scale_r2"], "images scaled by s (full beam off by 1/s)", 1.0),
        (
            np.asarray(sweep["offsets"]) * 1e4,
            sweep["offset_r2"],
            "images shifted by δ (10⁻⁴ of the beam)",
            0.0,
        ),
        (
            np.asarray([0.0, *sweep["read_noise"]]) * 1e4,
            noise_r2,
            "standard deviation of the read noise (10⁻⁴ of the beam)",
            0.0,
        ),
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (x, curves, label, exact) in zip(axes, panels, strict=True):
        for name, values in curves.items():
            ax.plot(x, values, "o-", ms=3, label=name)
        ax.axvline(exact, color="k", lw=0.6, ls=":")
        ax.set_xlabel(label)
        ax.set_ylim(-1.0, 1.0)  # an R² below -1 leaves the panel: the estimate is useless there
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("R² (normalised)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Intensity calibration errors, {sweep['images']} test images", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "calibration.png", dpi=110)
    plt.close(fig)
    return "calibration.png"


def _calibration_lines(sweep: dict, train: dict) -> list[str]:
    trained = (
        f"This run was trained with black_level_jitter = {train.get('black_level_jitter', 0):g} "
        f"and read_noise = {train.get('read_noise', 0):g}."
    )
    lines = [
        "",
        "## Intensity calibration",
        "",
        f"R² (normalised) on the first {sweep['images']} test images when the images are "
        "scaled by s, as a full-beam value 1/s times the true one makes them, or shifted by δ "
        "(fractions of the beam), as a black level off by -δ makes them. The median particle "
        f"pixel of a rendered aggregate is about 0.005 of the beam. {trained}",
    ]
    for x_key, r2_key, symbol in (("scales", "scale_r2", "s"), ("offsets", "offset_r2", "δ")):
        lines += [
            "",
            "| parameter | " + " | ".join(f"{symbol} = {v:g}" for v in sweep[x_key]) + " |",
            "|---|" + "---|" * len(sweep[x_key]),
        ]
        for name, values in sweep[r2_key].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(v) for v in values) + " |")
    lines += [
        "",
        "With each image's black level taken from the median of its 4 outermost rows and "
        "columns (heteroagg predict --black-level border), every shift above is undone alike; "
        "that border gives a black level other than 0 (reads other than the field around the "
        f"particles reads in training) on {sweep['border_nonzero']} of these images. R² then:",
        "",
        "| parameter | R², black level from the border |",
        "|---|---|",
    ]
    lines += [f"| {name} | {_fmt(v)} |" for name, v in sweep["border_r2"].items()]
    noise = sweep["read_noise"]
    lines += [
        "",
        "Read noise: R² with Gaussian noise of standard deviation sigma (fractions of the beam) "
        "added to every pixel, as a real detector reads in vacuum, where a simulation reads 0 "
        "(the training option read_noise adds such noise to the training images).",
        "",
        "| parameter | " + " | ".join(f"sigma = {v:g}" for v in noise) + " |",
        "|---|" + "---|" * len(noise),
    ]
    for name, values in sweep["read_noise_r2"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(v) for v in values) + " |")
    return lines


def write_report(out: Path, report: dict, evaluated: Any) -> None:
    """Write ``report.json``, ``report.md`` and (with matplotlib) the PNG plots of an
    :class:`~heteroagg.learn.evaluation.Evaluated`."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        plots = _plots(out, evaluated, report)
    except ImportError:
        plots = []
    report["plots"] = plots

    lines = [
        f"# heteroagg evaluation of {report['run']}",
        "",
        f"Test set: {report['data']} ({report['n_test_images']} images"
        + (
            ", shot noise baked into the dataset at doses from its prior"
            if report.get("baked_noise")
            else ", shot noise at doses from the dataset's prior"
            if report["noise"]
            else ", without noise"
        )
        + ")."
        + (
            " Predictions averaged over each image's quarter turns and mirrors."
            if report.get("symmetrized")
            else ""
        )
        + (
            " **Imaged otherwise than the training set:** "
            + "; ".join(
                f"{key} {d['test']} (training: {d['training']})"
                for key, d in report["imaging_differences"].items()
            )
            + "."
            if report.get("imaging_differences")
            else ""
        ),
        "",
        "## Parameters",
        "",
        "| parameter | R² | R² (normalised) | MAE | RMSE | bias | oracle R² (3D, upper bound) "
        "| volume observer R² |"
        + (" 1sigma coverage | 2sigma coverage |" if report["uncertainty"] else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if report["uncertainty"] else ""),
    ]
    for name, m in report["parameters"].items():
        row = (
            f"| {name} | {_fmt(m['r2'])} | {_fmt(m['r2_normalized'])} | {_fmt(m['mae'])} | "
            f"{_fmt(m['rmse'])} | {_fmt(m['bias'])} | {_fmt(m.get('oracle_r2'))} | "
            f"{_fmt(m.get('volume_observer_r2'))} |"
        )
        if report["uncertainty"]:
            row += f" {_pct(m['coverage_1sigma'])} | {_pct(m['coverage_2sigma'])} |"
        lines.append(row)
    lines += [
        "",
        "Oracle R²: the R² of the Bayes posterior mean of an observer that sees the aggregate "
        "in 3D (N, each particle's material and radius) and also knows sigma_g, over 50 000 "
        "draws from the test set's prior (heteroagg.learn.ceiling). No estimator from one "
        "image can beat it in expectation. Volume observer R²: an observer that counts the "
        "particles and knows each material's total volume, but cannot tell the particles "
        "apart (nearest-neighbour posterior mean over the same number of draws); an estimate "
        "below it does not even use what weighing the materials tells. n/a: not computed for "
        "that parameter.",
    ]
    if report["uncertainty"]:
        lines += [
            "",
            "Nominal coverage of a calibrated Gaussian: 68.3 % (1sigma), 95.4 % (2sigma); "
            "coverage.png shows it at every level.",
        ]
    k = report["twins_per_image"]
    lines += [
        "",
        "## Descriptors through digital twins",
        "",
        f"For each of {report['n_twin_images']} test images, K = {k} twins are sampled at θ̂"
        + (" (θ drawn from the predictive distribution)" if report["uncertainty"] else "")
        + ", and K aggregates at the true θ. Relative errors are of the mean over K against the "
        "imaged aggregate; the true-θ column is the model's own spread, the floor for any "
        "estimate of θ. Truths that are undefined (a material the aggregate lacks) are left "
        "out everywhere; truths of 0 have no relative error and are left out of those columns "
        "(n/a where none is left), though not of the coverage."
        + (
            f" The twins are conditioned on the direct descriptor heads: "
            f"{report['twin_candidates']} candidates drawn at θ̂ are weighted by how well their "
            "descriptors agree with the heads'"
            + (
                f" (their standard deviations widened {report['twin_head_spread']:g} times)"
                if report.get("twin_head_spread") not in (None, 1.0)
                else ""
            )
            + "; the twins' error is that of their weighted "
            "mean, and K of them resampled by weight give the single twin and the range. "
            "They use what the image shows beyond θ, so they can beat the true-θ floor."
            if report.get("twin_candidates")
            else ""
        ),
        "",
        "| descriptor | median abs. rel. error, twins | same, true θ | within 15 %, twins | "
        "same, true θ | single twin | truth in twins' range | same, true θ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["descriptors"].items():
        t, r, s = m["twin_mean"], m["true_theta_mean"], m["single_twin"]
        lines.append(
            f"| {DESCRIPTOR_LABELS[name]} | {_pct(t.get('median_abs'))} | "
            f"{_pct(r.get('median_abs'))} | {_pct(t.get('within_15pct'))} | "
            f"{_pct(r.get('within_15pct'))} | {_pct(s.get('median_abs'))} | "
            f"{_pct(m['coverage_twins'])} | {_pct(m['coverage_true_theta'])} |"
        )
    lines += [
        "",
        f"The range of K = {k} exchangeable samples holds the truth with probability "
        f"{report['nominal_twin_range_coverage']:.1%} when they share its law and ties "
        "cannot occur (R_g). The other descriptors are ratios of small counts: a truth "
        "equal to the range's end counts as held, so the share lies above that figure even "
        "for exact samples; compare them with the true-θ column.",
        f"Sampling failures: {report['twin_failures']}.",
    ]
    names = list(report["parameters"])
    ratio = _quarter_ratios(report["error_by_quarter"], names)
    lines += [
        "",
        "## Errors across the prior",
        "",
        "Each row's RMSE (normalised) among the quarter of test items with the highest true "
        "value of the column's parameter, over that among the quarter with the lowest: above "
        "1, the row's error grows with the column's parameter. report.json holds all four "
        "quarters (error_by_quarter).",
        "",
        "| error of | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for name, row in zip(names, ratio, strict=True):
        cells = ("n/a" if not math.isfinite(v) else f"{v:.2f}" for v in row)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if report.get("calibration"):
        lines += _calibration_lines(report["calibration"], report.get("train", {}))
    if report["direct_descriptor_heads"]:
        lines += [
            "",
            "## Descriptors regressed directly",
            "",
            "| descriptor | R² | median abs. rel. error | within 15 % |",
            "|---|---|---|---|",
        ]
        for name, m in report["direct_descriptor_heads"].items():
            lines.append(
                f"| {name} | {_fmt(m['r2'])} | {_pct(m['relative'].get('median_abs'))}"
                f" | {_pct(m['relative'].get('within_15pct'))} |"
            )
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    text = json.dumps(_json_safe(report), indent=2, allow_nan=False)
    write_text_atomic(out / "report.json", text)  # last: the report is whole


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
