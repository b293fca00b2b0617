"""The ``heteroagg`` command line."""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import heteroagg
from heteroagg._device import cuda_status
from heteroagg.aggregate import AGGREGATE_SUFFIXES
from heteroagg.model import ModelParams

app = typer.Typer(
    help="heteroagg: 3D structure of TiO2-WO3 hetero-aggregates from HAADF-STEM images.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

_DEFAULTS = ModelParams()

#: Images that ``predict --plot`` draws, at most, and the figure formats it writes.
PLOT_IMAGES = 16
PLOT_SUFFIXES = (".png", ".pdf", ".svg")

#: Options shared by ``evaluate`` and ``predict``: twins conditioned on the direct heads.
TwinCandidates = Annotated[
    int, typer.Option(help="M: condition the twins on the direct descriptor heads (0: do not).")
]
TwinHeadSpread = Annotated[
    float, typer.Option(help="Factor on the heads' spread when they condition the twins.")
]


def _abort(err: Exception) -> NoReturn:
    """Print a one-line error and exit with status 2."""
    console.print(f"[red]error:[/red] {escape(str(err))}")
    raise typer.Exit(code=2) from err


@contextmanager
def _resumable(hint: str | Callable[[], str]) -> Iterator[None]:
    """On Ctrl-C, say how to continue (``hint``, or what it returns then) and exit with
    status 130."""
    try:
        yield
    except KeyboardInterrupt:
        text = hint if isinstance(hint, str) else hint()
        console.print(f"[yellow]interrupted:[/yellow] {escape(text)}")
        raise SystemExit(130) from None  # not an Exception, so no handler of errors takes it


def _check_output_folder(option: str, path: Path | None) -> None:
    """Refuse, before any work, an output file that is a folder, or whose folder does not
    exist or cannot be written."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{option} {path}: the folder {folder} cannot be written")


def _check_not_inputs(outputs: dict[str, Path | None], inputs: list[Path]) -> None:
    """Refuse outputs that would overwrite an input file (their suffixes keep them apart)."""
    read = {path.resolve(): path for path in inputs}
    for option, path in outputs.items():
        if path is not None and path.resolve() in read:
            raise ValueError(f"{option} {read[path.resolve()]} is one of the input images")


def _check_figure(option: str, path: Path | None) -> None:
    """Refuse, before any work, a figure path of an unknown format or in a missing folder."""
    if path is None:
        return
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ValueError(f"{option} must end in one of {PLOT_SUFFIXES}, got {path.name!r}")
    _check_output_folder(option, path)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    """A rich table with one header per column."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
def info() -> None:
    """Print the version, build flags and CUDA availability."""
    build = heteroagg._build_info
    compiled, reason = cuda_status()
    cuda_compiler = build["cuda_compiler"].strip()
    table = Table(show_header=False, box=None)
    table.add_row("heteroagg", heteroagg.__version__)
    table.add_row("python", platform.python_version())
    table.add_row("C++ compiler", build["compiler"])
    table.add_row("build type", build["build_type"])
    table.add_row("C++ flags", build["cxx_flags"].strip() or "(none)")
    table.add_row("CUDA compiler at build", cuda_compiler or "not found")
    table.add_row("CUDA device", "yes" if compiled else "no")
    table.add_row("CUDA status", reason)
    if compiled:
        try:
            from heteroagg._device import cuda_fft_extension

            fft = cuda_fft_extension("cuda").load_cufft([])
        except RuntimeError as err:
            fft = f"not found ({str(err).splitlines()[0]})"
        table.add_row("cuFFT (GPU multislice)", fft)
    if importlib.util.find_spec("torch") is not None:
        table.add_row("torch", _torch_row())
    console.print(table)


def _torch_row() -> str:
    """torch's version and the arithmetic of training steps on this CPU."""
    import torch

    from heteroagg.learn.torch_device import native_bfloat16, training_dtype

    cpu = torch.device("cpu")
    steps = "bfloat16" if training_dtype("auto", cpu) is not None else "float32"
    why = "computes bfloat16 natively" if native_bfloat16(cpu) else "would emulate bfloat16"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{torch.__version__}; CPU training steps in {steps} (this {capability} CPU {why})"


@app.command()
def sample(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the aggregate (.npz or .json).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed in [0, 2**64).")] = 0,
    n_particles: Annotated[
        int, typer.Option(help="Number of particles N.")
    ] = _DEFAULTS.n_particles,
    frac_w: Annotated[float, typer.Option(help="Number fraction of WO3.")] = _DEFAULTS.frac_w,
    radius_ti: Annotated[
        float, typer.Option(help="Median TiO2 radius (nm).")
    ] = _DEFAULTS.radius_ti,
    radius_w: Annotated[float, typer.Option(help="Median WO3 radius (nm).")] = _DEFAULTS.radius_w,
    sigma_g: Annotated[float, typer.Option(help="Geometric std of the radii.")] = _DEFAULTS.sigma_g,
    fractal_dim: Annotated[
        float, typer.Option(help="Fractal dimension D_f.")
    ] = _DEFAULTS.fractal_dim,
    prefactor: Annotated[float, typer.Option(help="Fractal prefactor k_f.")] = _DEFAULTS.prefactor,
    segregation: Annotated[
        float, typer.Option(help="0 mixed ... 1 segregated.")
    ] = _DEFAULTS.segregation,
    overlap: Annotated[float, typer.Option(help="Neck overlap fraction.")] = _DEFAULTS.overlap,
    plot: Annotated[
        Path | None, typer.Option(help="Save a picture of the aggregate (PNG, PDF, SVG).")
    ] = None,
) -> None:
    """Sample one aggregate, print its descriptors and optionally save it."""
    try:
        if out is not None and out.suffix.lower() not in AGGREGATE_SUFFIXES:
            raise ValueError(f"--out must end in .npz or .json, got {out.name!r}")
        _check_output_folder("--out", out)
        _check_figure("--plot", plot)
        params = ModelParams(
            n_particles=n_particles,
            frac_w=frac_w,
            radius_ti=radius_ti,
            radius_w=radius_w,
            sigma_g=sigma_g,
            fractal_dim=fractal_dim,
            prefactor=prefactor,
            segregation=segregation,
            overlap=overlap,
        )
        agg = heteroagg.sample_aggregate(params, seed)
    except (ValueError, heteroagg.GenerationError) as err:
        _abort(err)
    d = agg.descriptors()
    table = Table(title=f"aggregate (seed {seed})")
    table.add_column("descriptor")
    table.add_column("value", justify="right")
    table.add_row("particles (TiO2 / WO3)", f"{agg.n_particles} ({agg.n_tio2} / {agg.n_wo3})")
    for name, value in d.scalars().items():
        unit = " nm" if name == "radius_of_gyration" else ""
        unit = " nm²" if name in ("asphericity", "acylindricity") else unit
        table.add_row(name, f"{value:.4g}{unit}")
    console.print(table)
    try:
        if out is not None:
            console.print(f"wrote {agg.save(out)}")
        if plot is not None:
            from heteroagg.plot import save_aggregate_plot

            console.print(f"wrote {save_aggregate_plot(agg, plot)}")
    except (OSError, ValueError) as err:
        _abort(err)


validate_app = typer.Typer(
    help="Cross-check heteroagg against reference codes.", no_args_is_help=True
)
app.add_typer(validate_app, name="validate")


@validate_app.command("abtem")
def validate_abtem(
    case: Annotated[
        list[str] | None,
        typer.Option("--case", help="Case name (repeatable); default: all but the speed anchor."),
    ] = None,
    window: Annotated[
        str, typer.Option(help="heteroagg probe window: 'none' (full cell, as abTEM), 'auto' or Å.")
    ] = "none",
    threads: Annotated[int, typer.Option(help="heteroagg threads (0: all cores).")] = 0,
    plot: Annotated[
        Path | None, typer.Option(help="Save both codes' images and their difference (.png).")
    ] = None,
) -> None:
    """Run comparison cases in heteroagg and abTEM with identical settings."""
    from heteroagg.validate.against_abtem import CASES, compare, plot_comparisons

    try:
        import abtem  # noqa: F401
    except ImportError:
        console.print("[red]abTEM is not installed: pip install 'heteroagg\\[validate]'[/red]")
        raise typer.Exit(code=1) from None
    names = case or [name for name in CASES if name != "speed-anchor"]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        raise typer.BadParameter(f"unknown case(s) {unknown}; known: {list(CASES)}")
    win: float | str | None = None if window == "none" else window
    if win not in (None, "auto"):
        try:
            win = float(window)
        except ValueError:
            win = math.nan
        if not (math.isfinite(win) and win > 0):
            raise typer.BadParameter(
                f"window must be 'none', 'auto' or a positive size in Å, got {window!r}"
            )
    if threads < 0:
        raise typer.BadParameter(f"threads must be >= 0, got {threads}")
    try:
        _check_figure("--plot", plot)
    except ValueError as err:
        _abort(err)
    table = Table(title="heteroagg vs abTEM (HAADF, Lobato, infinite projection)")
    table.add_column("case", no_wrap=True, min_width=max(len(n) for n in names))
    for column in ("NCC", "max rel. diff", "mean rel. diff", "heteroagg s", "abTEM s", "speed-up"):
        table.add_column(column, justify="right", no_wrap=True)
    results = []
    for name in names:
        with console.status(f"running {name}"):
            result = compare(name, window=win, threads=threads)
        results.append(result)
        m = result.metrics
        table.add_row(
            name,
            f"{m['ncc']:.6f}",
            f"{m['max_relative_difference']:.1e}",
            f"{m['mean_relative_difference']:.1e}",
            f"{result.heteroagg_seconds:.2f}",
            f"{result.abtem_seconds:.2f}",
            f"{m['speed_ratio']:.1f}x",
        )
    Console(width=max(console.width, 110)).print(table)  # all columns, even when piped
    if plot is not None:
        console.print(f"wrote {plot_comparisons(results, plot)}")


@app.command()
def calibrate(
    material: Annotated[
        list[str] | None,
        typer.Argument(help="TiO2, WO3 and/or C (amorphous carbon); default: all three."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the LUT files.")] = Path(
        "luts"
    ),
    thickness_max: Annotated[
        float | None, typer.Option(help="Deepest thickness (nm); default: the shipped LUT's.")
    ] = None,
    orientations: Annotated[
        int | None, typer.Option(help="Random orientations; default: the shipped LUT's.")
    ] = None,
    positions: Annotated[
        int | None, typer.Option(help="Probe positions per side per orientation.")
    ] = None,
    frozen_phonons: Annotated[
        int | None, typer.Option(help="Frozen phonons per orientation.")
    ] = None,
    energy: Annotated[float, typer.Option(help="Electron energy (eV).")] = 300e3,
    semiangle: Annotated[float, typer.Option(help="Probe semiangle (mrad).")] = 20.0,
    inner: Annotated[float, typer.Option(help="Detector inner angle (mrad).")] = 52.0,
    outer: Annotated[float, typer.Option(help="Detector outer angle (mrad).")] = 255.0,
    seed: Annotated[int, typer.Option(help="Root seed in [0, 2**64).")] = 0,
    threads: Annotated[int, typer.Option(help="Worker threads (0: all cores).")] = 0,
    memory_gb: Annotated[
        float | None,
        typer.Option(
            help="Memory (GB) the slab's potentials may take; default: the shipped LUT's, else 4.",
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Save I(t) and R(t) of the LUTs (.png, .pdf, .svg).")
    ] = None,
) -> None:
    """Compute HAADF thickness LUTs by multislice (the shipped ones again, into --out).

    With no options this recomputes the LUTs that ship with heteroagg.  Each
    finished orientation is checkpointed under OUT, so an interrupted run
    resumes where it stopped when started again with the same options; LUTs
    already in OUT with the same settings are kept.
    """
    from heteroagg.stem.calibration import (
        DEFAULT_CALIBRATIONS,
        calibrate,
        calibration_inputs,
        canonical_material,
    )
    from heteroagg.stem.lut import HaadfLUT

    try:
        names = [canonical_material(m) for m in (material or list(DEFAULT_CALIBRATIONS))]
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    try:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; give a folder for the LUT files")
        _check_figure("--plot", plot)
        if memory_gb is not None and not (math.isfinite(memory_gb) and memory_gb > 0):
            raise ValueError(f"--memory-gb must be a positive number, got {memory_gb}")
    except ValueError as err:
        _abort(err)
    overrides = {
        "thickness_max": thickness_max,
        "orientations": orientations,
        "positions": positions,
        "frozen_phonons": frozen_phonons,
        "memory_limit": None if memory_gb is None else memory_gb * 1e9,
    }
    common = {"energy": energy, "semiangle": semiangle, "detector": (inner, outer), "seed": seed}
    settings = {
        name: {
            **common,
            **DEFAULT_CALIBRATIONS[name],
            **{k: v for k, v in overrides.items() if v is not None},
        }
        for name in names
    }
    try:  # every material's settings, and the folder, before hours go into the first one
        inputs = {name: calibration_inputs(name, **settings[name]) for name in names}
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise ValueError(f"--out {out} cannot be written")
    except ValueError as err:
        _abort(err)
    except OSError as err:
        _abort(ValueError(f"--out {out} cannot be made: {err.strerror or err}"))
    luts = []
    for name in names:
        path, checkpoint = out / f"{name}.npz", out / f"{name}.checkpoint.npz"
        if path.exists():
            try:
                finished = HaadfLUT.load(path)
            except (OSError, ValueError, KeyError):
                finished = None
            if finished is not None and finished.inputs == inputs[name]:
                luts.append(finished)
                console.print(f"kept {path}: made with these settings")
                continue

        def hint(checkpoint: Path = checkpoint) -> str:
            if not checkpoint.exists():
                return "no orientation had finished, so none was kept"
            return f"finished orientations are kept in {checkpoint}; the same command goes on"

        try:
            with _resumable(hint):
                lut = calibrate(
                    name, threads=threads, checkpoint=checkpoint, progress=True, **settings[name]
                )
        except (ValueError, OSError) as err:
            _abort(err)
        path = lut.save(path)
        if _checkpoint_rows(checkpoint) <= len(lut.samples):  # else it holds more than used
            checkpoint.unlink(missing_ok=True)
        luts.append(lut)
        console.print(f"wrote {path}: {lut!r}")
    if plot is not None:
        from heteroagg.stem.lut import plot_luts

        console.print(f"wrote {plot_luts(luts, plot)}")


def _checkpoint_rows(path: Path) -> int:
    """Orientations a calibration checkpoint holds (0 without one)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return len(data["samples"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return 0  # none, or damaged


@app.command()
def render(
    aggregate: Annotated[Path, typer.Argument(help="An aggregate file (.npz or .json).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Image file: .npy (float32) or .png.")],
    pixel_size: Annotated[float, typer.Option(help="Pixel size (nm).")] = 0.5,
    shape: Annotated[int, typer.Option(help="Image side (pixels).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of rotation and noise in [0, 2**64).")] = 0,
    dose: Annotated[float, typer.Option(help="Dose (e/Å²); 0: no shot noise.")] = 0.0,
    support: Annotated[float, typer.Option(help="Carbon support film (nm); 0: none.")] = 0.0,
    extrapolate: Annotated[bool, typer.Option(help="Continue LUTs past their end.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Render a HAADF-STEM image of an aggregate with the shipped LUTs."""
    import warnings

    import numpy as np

    from heteroagg.aggregate import Aggregate
    from heteroagg.stem import FieldOfViewWarning, render_haadf

    try:
        if out.suffix.lower() not in (".npy", ".png"):
            raise ValueError(f"--out must end in .npy or .png, got {out.name!r}")
        _check_output_folder("--out", out)
        agg = Aggregate.load(aggregate)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FieldOfViewWarning)
            image = render_haadf(
                agg, pixel_size=pixel_size, shape=shape, seed=seed, dose=dose or None,
                support=support or None, extrapolate=extrapolate, device=device,
            )  # fmt: skip
    except (OSError, ValueError, RuntimeError) as err:
        _abort(err)
    except MemoryError:
        _abort(MemoryError(f"a {shape} x {shape} image does not fit in memory"))
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {escape(str(warning.message))}")
    from heteroagg._atomic import replaced_on_success

    with replaced_on_success(out) as tmp, open(tmp, "wb") as stream:  # the name as given
        if out.suffix.lower() == ".npy":
            np.save(stream, image)
        else:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            plt.imsave(stream, image, cmap="gray", format="png")
    console.print(f"wrote {out}: {shape} x {shape} pixels of {pixel_size:g} nm, "
                  f"intensity {image.min():.3g}-{image.max():.3g} of the beam")  # fmt: skip


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder of the dataset.")],
    n: Annotated[int, typer.Option("--n", help="Number of items.")],
    config: Annotated[
        Path | None, typer.Option(help="Dataset config (.toml); default: the shipped one.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Root seed in [0, 2**64).")] = 0,
    workers: Annotated[int, typer.Option(help="Local worker processes.")] = 1,
    shard_size: Annotated[int, typer.Option(help="Items per HDF5 shard.")] = 512,
    resume: Annotated[bool, typer.Option(help="Complete an interrupted dataset.")] = False,
    redraw: Annotated[
        bool, typer.Option(help="Re-draw parameters that cannot be built (default: record them).")
    ] = False,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a dask.distributed scheduler (tcp://...).")
    ] = None,
    dask_local: Annotated[
        bool, typer.Option(help="Run on a Dask LocalCluster of --workers processes.")
    ] = False,
    device: Annotated[
        str, typer.Option(help="Render on: cpu, cuda or auto (see docs/performance.md).")
    ] = "cpu",
) -> None:
    """Generate a synthetic dataset of (parameters, image, 3D aggregate) items."""
    from heteroagg.data import DatasetConfig, default_config
    from heteroagg.data.generation import generate as run

    hint = (
        f"the finished shards in {out} are kept; add --resume to the same command to complete them"
    )
    try:
        if dask_local and scheduler is not None:
            raise ValueError("give --scheduler ADDRESS or --dask-local, not both")
        cfg = DatasetConfig.from_toml(config) if config is not None else default_config()
        with _resumable(hint):
            summary = run(
                cfg, n, out, seed=seed, workers=workers, resume=resume, shard_size=shard_size,
                on_failure="redraw" if redraw else "skip", progress=True,
                scheduler="local" if dask_local else scheduler, device=device,
            )  # fmt: skip
    except BrokenExecutor as err:  # a worker killed (out of memory, say)
        _abort(RuntimeError(f"{err}; {hint}"))
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        _abort(err)
    table = Table(title=f"dataset {out}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("items", f"{summary.items} ({summary.computed} computed in this run)")
    table.add_row("throughput", f"{summary.images_per_second:.0f} images/s")
    table.add_row("storage", f"{summary.bytes_per_image / 1e3:.1f} kB per image")
    reasons = ", ".join(f"{k}: {v}" for k, v in summary.reasons.items()) or "none"
    of_run = " in this run" if summary.computed < summary.items else ""
    table.add_row(f"failed items{of_run}", f"{summary.failed} ({reasons})")
    share = summary.clipped / max(summary.computed, 1)
    table.add_row(f"cropped by the field of view{of_run}", f"{summary.clipped} ({share:.1%})")
    console.print(table)


@app.command()
def export(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder from heteroagg generate.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (.emd or .hspy).")],
    format: Annotated[str, typer.Option("--format", help="emd (EMD 1.0) or hspy (HyperSpy).")],
    items: Annotated[str | None, typer.Option(help="Items as START:STOP (default: all).")] = None,
) -> None:
    """Export dataset items to EMD 1.0 (py4DSTEM) or HyperSpy files."""
    from heteroagg.data.export import export_dataset

    selection = None
    if items is not None:
        try:
            start, stop = (int(v) if v else None for v in items.split(":"))
        except ValueError:
            raise typer.BadParameter(f"items must be START:STOP, got {items!r}") from None
        selection = slice(start, stop)
    try:
        path = export_dataset(dataset, out, format=format, items=selection)
    except (OSError, ValueError, ImportError) as err:
        _abort(err)
    console.print(f"wrote {path}")


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    data: Annotated[
        Path | None, typer.Option("--data", help="Training dataset folder (not on the fly).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Training settings (.toml, a \\[train] table).")
    ] = None,
    on_the_fly: Annotated[
        bool,
        typer.Option("--on-the-fly", help="Train on items generated and rendered while training."),
    ] = False,
    data_config: Annotated[
        Path | None,
        typer.Option(help="On the fly: dataset config (.toml) of the items; default: shipped."),
    ] = None,
    val_data: Annotated[
        Path | None,
        typer.Option(help="On the fly: a dataset folder to validate on (another seed)."),
    ] = None,
    items_per_epoch: Annotated[
        int | None, typer.Option(help="Override, on the fly: training items per epoch.")
    ] = None,
    data_seed: Annotated[
        int | None, typer.Option(help="Override, on the fly: root seed of the item stream.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run, or grow its ensemble.")
    ] = False,
    epochs: Annotated[int | None, typer.Option(help="Override: most epochs.")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Override: stop a member after this long.")
    ] = None,
    ensemble: Annotated[int | None, typer.Option(help="Override: ensemble members.")] = None,
    gaussian: Annotated[
        bool | None, typer.Option("--gaussian/--no-gaussian", help="Override: Gaussian head.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override: root seed.")] = None,
    label_maps: Annotated[
        bool | None,
        typer.Option(
            "--label-maps/--no-label-maps",
            help="Override: learn all label maps as an auxiliary target, or none.",
        ),
    ] = None,
) -> None:
    """Train a CNN regressor of the model parameters (torchrun for several GPUs).

    From a stored dataset (--data DIR), or on the fly (--on-the-fly): items
    generated from a dataset config and rendered while training, never stored.
    """
    from heteroagg.learn import TrainConfig
    from heteroagg.learn import train as run
    from heteroagg.learn.config import LABEL_MAPS

    overrides = {"epochs": epochs, "max_minutes": max_minutes, "ensemble": ensemble,
                 "gaussian": gaussian, "seed": seed, "items_per_epoch": items_per_epoch,
                 "data_seed": data_seed, "on_the_fly": on_the_fly or None}  # fmt: skip
    if label_maps is not None:
        overrides["label_maps"] = LABEL_MAPS if label_maps else ()
    try:
        base = TrainConfig.from_toml(config).to_dict() if config is not None else {}
        base.update({k: v for k, v in overrides.items() if v is not None})
        settings = TrainConfig.from_dict(base)
        if not settings.on_the_fly and (items_per_epoch is not None or data_seed is not None):
            raise ValueError("--items-per-epoch and --data-seed are for --on-the-fly runs")
        if settings.on_the_fly:
            if data is not None:
                raise ValueError(
                    "--data is a stored dataset; on the fly, give the items' --data-config "
                    "(and --val-data to validate on a stored dataset)"
                )
            source: Path | None = data_config
        else:
            if data_config is not None or val_data is not None:
                raise ValueError("--data-config and --val-data are for --on-the-fly runs")
            if data is None:
                raise ValueError("give --data (a dataset folder) or --on-the-fly")
            source = data
        every = f"{settings.checkpoint_minutes:g} min"
        hint = (f"{out} keeps the last checkpoint (saved every {every} and at each epoch's "
                "end); add --resume to the same command to go on")  # fmt: skip
        with _resumable(hint):
            summary = run(source, out, settings, device=device, resume=resume, validation=val_data)
    except (OSError, ValueError, RuntimeError) as err:
        _abort(err)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    members = zip(summary.epochs, summary.best_val_loss, summary.stopped, strict=True)
    rows = [(str(k), str(e), f"{loss:.4g}", why) for k, (e, loss, why) in enumerate(members)]
    console.print(_table(f"run {out}", ("member", "epochs", "best val loss", "stopped by"), rows))
    console.print(f"{summary.seconds / 60:.1f} min; metrics in {out}/member-*/metrics.csv")


@app.command()
def evaluate(
    model: Annotated[
        Path,
        typer.Option(
            "--model", help="Run folder from heteroagg train, or an .onnx model from export-onnx."
        ),
    ],
    data: Annotated[Path, typer.Option("--data", help="Held-out test dataset folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder to write.")],
    twins: Annotated[int, typer.Option(help="K: twins per image (and true-θ samples).")] = 8,
    twin_images: Annotated[int, typer.Option(help="Test images that get twins.")] = 200,
    seed: Annotated[int, typer.Option(help="Root seed of test noise and twins.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    symmetrize: Annotated[
        bool, typer.Option(help="Average over the image's quarter turns and mirrors.")
    ] = False,
    twin_candidates: TwinCandidates = 0,
    twin_head_spread: TwinHeadSpread = 1.0,
    calibration: Annotated[
        bool,
        typer.Option(
            help="Also report R² with the test images scaled and shifted, as errors of the "
            "full-beam value and black level make them.",
        ),
    ] = True,
) -> None:
    """Error analysis of a trained run: parameters, descriptors of twins, failure modes."""
    from heteroagg.learn import evaluate as run

    hint = (f"{out} keeps the twins made so far; run the same command again to go on "
            "from them")  # fmt: skip
    try:
        with _resumable(hint):
            report = run(model, data, out, twins=twins, twin_images=twin_images, seed=seed,
                         device=device, symmetrize=symmetrize,
                         twin_candidates=twin_candidates,
                         twin_head_spread=twin_head_spread, calibration=calibration)  # fmt: skip
    except (OSError, ValueError, RuntimeError) as err:
        _abort(err)
    rows = [
        (name, f"{m['r2']:.3f}", f"{m['mae']:.3g}", f"{m['bias']:.3g}")
        for name, m in report["parameters"].items()
    ]
    title = f"{report['n_test_images']} test images"
    console.print(_table(title, ("parameter", "R²", "MAE", "bias"), rows))
    hcn = report["descriptors"]["hetero_coordination_number"]
    if "median_abs" in hcn["twin_mean"]:
        console.print(
            f"HCN through {twins} twins: median |relative error| "
            f"{100 * hcn['twin_mean']['median_abs']:.1f} % "
            f"(true θ: {100 * hcn['true_theta_mean'].get('median_abs', float('nan')):.1f} %)"
        )
    elif report.get("n_twin_images", 0) > 0:
        console.print(
            "HCN through twins: no relative error (every twin image's true HCN is 0, or its "
            "twins could not be built); see the coverage in the report"
        )
    else:
        console.print("HCN through twins: not computed (no twin images)")
    # unwrapped, so that the paths can be copied
    console.print(f"report: {out / 'report.md'}", soft_wrap=True)
    console.print(f"every test image's θ: {out / 'predictions.npz'}", soft_wrap=True)


@app.command("export-onnx")
def export_onnx(
    run: Annotated[Path, typer.Argument(help="Run folder from heteroagg train.")],
    out: Annotated[Path, typer.Argument(help="The .onnx file to write.")],
    symmetrize: Annotated[
        bool, typer.Option(help="Average over the image's quarter turns and mirrors (8x work).")
    ] = False,
) -> None:
    """Export a trained run to ONNX, check it, and compare ONNX Runtime with PyTorch."""
    try:
        from heteroagg.deploy.export import export_onnx as export
    except ImportError as err:
        _abort(ImportError(f"export needs torch, onnx and onnxruntime: {err}"))
    try:
        report = export(run, out, symmetrize=symmetrize)
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        _abort(err)
    rows = [
        (str(b), f"{report.max_abs_difference[b]:.2e}", f"{report.max_rel_difference[b]:.2e}")
        for b in sorted(report.max_abs_difference)
    ]
    columns = ("batch", "max |Δ|", "max relative")
    console.print(_table("PyTorch against ONNX Runtime", columns, rows))
    console.print(f"onnx.checker passed; outputs: {', '.join(report.outputs)}")
    console.print(f"model: {report.path}")


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="An .onnx model from heteroagg export-onnx.")],
    images: Annotated[
        list[Path],
        typer.Argument(help="Image files: npy, TIFF, PNG, EMD (1.0, Velox), HDF5, DM3/DM4, HSPY."),
    ],
    pixel_size: Annotated[
        float | None, typer.Option(help="Pixel size (nm); default: the file's, else the model's.")
    ] = None,
    resample: Annotated[
        bool, typer.Option(help="Resample and crop/pad to the model's pixel and shape.")
    ] = False,
    intensity_scale: Annotated[
        float | None, typer.Option(help="Stored value of the full beam (integer images).")
    ] = None,
    black_level: Annotated[
        str | None,
        typer.Option(
            help="Stored value of vacuum, subtracted first: a number, or 'border' for what "
            "each image's outermost pixels read (beyond the film's level for a model trained "
            "on a support film).",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="HDF5/EMD 1.0 dataset to read, or the title of the image in DM, Velox and "
            "HyperSpy files (default: the one titled HAADF).",
        ),
    ] = None,
    twins: Annotated[int, typer.Option(help="K: digital twins sampled per image (0: none).")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="twins.h5 to write.")] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Figure (.png, .pdf, .svg) of each image beside its first three twins "
            f"(the first {PLOT_IMAGES} images).",
        ),
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option(help="θ̂, its band and the direct descriptor heads per image (.csv)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Root seed of the twins.")] = 0,
    twin_candidates: TwinCandidates = 0,
    twin_head_spread: TwinHeadSpread = 1.0,
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="The images show aggregates of one sample: pool the shared parameters "
            "over them (every parameter but n_particles).",
        ),
    ] = False,
    shared_error: Annotated[
        float,
        typer.Option(
            help="With --sample: the share of an image's error common to all images of the "
            "sample, in [0, 1]; widens the pooled band (docs/deploy.md).",
        ),
    ] = 0.0,
    providers: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """θ̂ for images with an exported model, and optionally 3D digital twins."""
    from heteroagg._progress import progress_bar
    from heteroagg.data.space import ParameterSpace
    from heteroagg.deploy.images import SINGLE_IMAGE_SUFFIXES, read_images
    from heteroagg.deploy.runtime import Predictor
    from heteroagg.pooling import pool_sample
    from heteroagg.rng import check_uint64, derive_seed
    from heteroagg.twins import (
        DESCRIPTOR_LABELS,
        TWIN_DESCRIPTORS,
        check_spread,
        descriptor_row,
        sample_twins,
        spread_text,
        write_twins,
    )

    try:
        if twins < 0:
            raise ValueError(f"--twins must be >= 0, got {twins}")
        if twins and out is None:
            raise ValueError("--twins needs --out FILE.h5 to write the twins to")
        if plot is not None and not twins:
            raise ValueError("--plot draws the twins: it needs --twins K")
        if csv is not None and csv.suffix.lower() != ".csv":
            raise ValueError(f"--csv must end in .csv, got {csv.name!r}")
        if out is not None and out.suffix.lower() not in (".h5", ".hdf5"):
            raise ValueError(
                f"--out is an HDF5 file and must end in .h5 or .hdf5, got {out.name!r}"
            )
        if pixel_size is not None and not (math.isfinite(pixel_size) and pixel_size > 0):
            raise ValueError(f"--pixel-size must be a positive number of nm, got {pixel_size}")
        _check_figure("--plot", plot)
        for option, path in (("--out", out), ("--csv", csv)):
            _check_output_folder(option, path)
        _check_not_inputs({"--out": out, "--csv": csv, "--plot": plot}, images)
        if plot is not None and importlib.util.find_spec("matplotlib") is None:
            raise ImportError("--plot needs matplotlib: pip install 'heteroagg[plot]'")
        if twin_candidates and twin_candidates < twins:
            raise ValueError(f"--twin-candidates must be 0 or >= --twins, got {twin_candidates}")
        single = [p.name for p in images if p.suffix.lower() in SINGLE_IMAGE_SUFFIXES]
        if dataset is not None and single:
            raise ValueError(
                f"--dataset chooses an image inside HDF5, EMD, DM, Velox or HyperSpy files; "
                f"{', '.join(single[:3])} hold{'s' if len(single) == 1 else ''} one"
            )
        if twin_candidates and not twins:
            raise ValueError("--twin-candidates conditions twins: it needs --twins K")
        check_spread(twin_head_spread, "--twin-head-spread")
        if twin_head_spread != 1.0 and not twin_candidates:
            raise ValueError(
                "--twin-head-spread weighs twin candidates: it needs --twin-candidates"
            )
        check_uint64("seed", seed)
        if shared_error and not sample:
            raise ValueError("--shared-error needs --sample")
        if not 0.0 <= shared_error <= 1.0:
            raise ValueError(f"--shared-error must lie in [0, 1], got {shared_error}")
        predictor = Predictor(model, providers=providers)
        black = _black_level(black_level)
        files, estimates = [], []
        plot_left = PLOT_IMAGES if plot is not None else 0
        for path in images:  # one file's images in memory at a time
            f = read_images(path, intensity_scale, dataset, black, predictor.vacuum_level)
            pixel = f.pixel_size_nm if pixel_size is None else pixel_size
            try:
                estimates.append(predictor.predict(f.images, pixel, resample))
            except ValueError as err:  # say which file
                raise ValueError(f"{f.path}: {err}") from None
            files.append(_FileRead.of(f, plot_left, predictor, pixel))
            plot_left -= len(files[-1].shown)
            del f
        if (
            twins
            and twin_candidates
            and not all(set(e.descriptors_std) & set(TWIN_DESCRIPTORS) for e in estimates)
        ):
            raise ValueError(
                "--twin-candidates needs a model with an uncertainty and descriptor heads of "
                f"twin descriptors ({', '.join(TWIN_DESCRIPTORS)})"
            )
        space = ParameterSpace.from_config(predictor.metadata["parameter_space"])
        normalized = np.concatenate([e.normalized for e in estimates])
        normalized_std = None
        if all(e.normalized_std is not None for e in estimates):
            normalized_std = np.concatenate([e.normalized_std for e in estimates])
        pooled = sample_values = None
        if sample:
            pooled = pool_sample(
                normalized, normalized_std, predictor.parameters, shared_error=shared_error
            )
            normalized, normalized_std = pooled.normalized, pooled.normalized_std
            sample_values = pooled.sample_values(space, predictor.parameters)
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        _abort(err)
    console.print(f"model {model.name} on {predictor.provider}")
    unstated = [f.path.name for f in files if pixel_size is None and f.pixel_size_nm is None]
    if unstated:
        names = ", ".join(unstated[:3]) + (
            f" and {len(unstated) - 3} more" if len(unstated) > 3 else ""
        )
        console.print(
            f"[yellow]note:[/yellow] no pixel size in {names}: taken as the model's "
            f"{predictor.pixel_size_nm:g} nm (--pixel-size sets it)"
        )
    _warn_of_unlike_vacuum(files, predictor)
    rows = []
    for f, estimate in zip(files, estimates, strict=True):
        for b, label in enumerate(_image_labels(f, files)):
            for k, name in enumerate(predictor.parameters):
                value = f"{estimate[name][b]:.4g}"
                band = ""
                if estimate.low is not None:
                    band = f"{estimate.low[name][b]:.4g} to {estimate.high[name][b]:.4g}"
                unit = predictor.units.get(name, "")
                rows.append((label if k == 0 else "", name, value, band, unit))
    columns = ("image", "parameter", "estimate", "one-sigma band", "unit")
    console.print(_table("θ̂", columns, rows))
    if pooled is not None:
        console.print(_sample_table(pooled, sample_values, space, predictor, shared_error))
    if csv is not None:
        from heteroagg.deploy.estimates_csv import write_estimates_csv

        labels = [_image_labels(f, files) for f in files]
        written = write_estimates_csv(csv, labels, estimates, predictor.parameters, sample_values,
                                      f"sample (pooled over {len(normalized)} images)")  # fmt: skip
        console.print(f"csv: {written}")
    if not twins:
        return
    records = []
    with progress_bar(True, len(normalized), "digital twins") as advance:
        for f, estimate in zip(files, estimates, strict=True):
            for b in range(f.count):
                r = len(records)
                std = None if normalized_std is None else normalized_std[r]
                heads = {
                    d: (estimate.descriptors[d][b], estimate.descriptors_std[d][b])
                    for d in estimate.descriptors_std
                    if d in TWIN_DESCRIPTORS
                }
                made, failed = sample_twins(
                    space, normalized[r], std, twins, derive_seed(seed, r),
                    heads=heads, candidates=twin_candidates, spread=twin_head_spread,
                )  # fmt: skip
                params = {name: estimate[name][b] for name in estimate}
                if pooled is not None:
                    physical = space.denormalize(np.clip(normalized[r], 0.0, 1.0))
                    params.update({name: physical[name] for name in predictor.parameters})
                records.append({"source": f.path, "index": b, "params": params, "twins": made,
                                "failed": failed})  # fmt: skip
                advance()
    write_twins(out, records, pooled_images=0 if pooled is None else pooled.images,
                sample=sample_values)  # fmt: skip
    rows = []
    for k, record in enumerate(records):
        values = np.array([descriptor_row(t) for t in record["twins"]], dtype=float)
        for j, name in enumerate(TWIN_DESCRIPTORS):
            label = DESCRIPTOR_LABELS[name]
            rows.append((str(k) if j == 0 else "", label, spread_text(values, j)))
    if pooled is not None:
        values = np.array([descriptor_row(t) for r in records for t in r["twins"]], dtype=float)
        values = values.reshape(-1, len(TWIN_DESCRIPTORS))
        for j, name in enumerate(TWIN_DESCRIPTORS):
            rows.append(("sample" if j == 0 else "", DESCRIPTOR_LABELS[name],
                         spread_text(values, j)))  # fmt: skip
    console.print(_table(f"descriptors of {twins} twins per image (mean ± spread)",
                         ("image", "descriptor", "twins"), rows))  # fmt: skip
    console.print(f"twins: {out}")
    if plot is not None:
        _plot_twins(plot, files, records, predictor, pixel_size, resample)


def _black_level(text: str | None) -> float | str | None:
    """``--black-level`` as :func:`~heteroagg.deploy.read_images` takes it."""
    if text is None or text == "border":
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--black-level must be a number or 'border', got {text!r}") from None


@dataclass(frozen=True)
class _FileRead:
    """What ``predict`` keeps of one file once the model has seen its images."""

    path: Path
    pixel_size_nm: float | None
    count: int
    level: float  # the largest |border level - model's vacuum level| (0: too small to tell)
    noise: float  # the largest read noise of the borders, at the model's pixel
    shown: np.ndarray  # the first images, kept for the plot

    @classmethod
    def of(cls, f: Any, keep: int, predictor: Any, pixel_size_nm: float | None) -> _FileRead:
        """Summarise an :class:`~heteroagg.deploy.images.ImageFile`, keeping ``keep`` images.

        Its borders' level is compared with what the model's training images read
        around the particles (:attr:`~heteroagg.deploy.Predictor.vacuum_level`), and
        their noise is scaled to the model's pixel: a coarser model pixel averages
        (model pixel / file pixel)² of the file's, which divides the noise by that ratio.
        """
        from heteroagg.deploy.images import BORDER_PIXELS, border_level, border_noise

        level = noise = 0.0
        if min(f.images.shape[1:]) > 2 * BORDER_PIXELS:
            border = border_level(f.images)
            level = float(np.max(np.abs(border - predictor.vacuum_level)))
            pixel = predictor.pixel_size_nm if pixel_size_nm is None else pixel_size_nm
            averaged = min(1.0, pixel / predictor.pixel_size_nm)
            noise = float(np.max(border_noise(f.images))) * averaged
        shown = f.images[: max(keep, 0)].copy()
        return cls(f.path, f.pixel_size_nm, len(f.images), level, noise, shown)


def _warn_of_unlike_vacuum(files: list[_FileRead], predictor: Any) -> None:
    """Say which images' borders, vacuum (or a support film) in a simulation, read more than
    the model was trained to take: a level further than VACUUM_TOLERANCE or twice its
    ``black_level_jitter`` from its training images' (0, or the film's), or noise beyond
    READ_NOISE_TOLERANCE or its ``read_noise``."""
    from heteroagg.deploy.images import READ_NOISE_TOLERANCE, VACUUM_TOLERANCE

    train = predictor.metadata.get("train", {})
    level_tolerance = max(VACUUM_TOLERANCE, 2.0 * float(train.get("black_level_jitter", 0.0)))
    noise_tolerance = max(READ_NOISE_TOLERANCE, float(train.get("read_noise", 0.0)))
    lit = {f.path.name: f.level for f in files if f.level > level_tolerance}
    noisy = {f.path.name: f.noise for f in files if f.noise > noise_tolerance}
    if lit:
        console.print(
            f"[yellow]note:[/yellow] the border of {_some_files(lit)} reads more than "
            f"{level_tolerance:.2g} of the beam away from {predictor.vacuum_level:.3g} (what the "
            "model's training images read there), which the model was not trained to take: a "
            "black level left in the images can bias θ̂ strongly (--black-level border removes it)"
        )
    if noisy:
        console.print(
            f"[yellow]note:[/yellow] the border of {_some_files(noisy)} has read noise above "
            f"{noise_tolerance:.2g} of the beam (standard deviation), which the model was not "
            "trained to take: such noise can bias θ̂ strongly (train with a larger read_noise)"
        )


def _some_files(values: dict[str, float]) -> str:
    """The first three names with their values, and whether there are more."""
    names = ", ".join(f"{name} ({value:.2g})" for name, value in list(values.items())[:3])
    return names + (" and more" if len(values) > 3 else "")


def _image_labels(f: _FileRead, files: list[_FileRead]) -> list[str]:
    """The file's name (its path as given where ``files`` share the name) for a single
    image, with the index for each image of a stack."""
    same_name = sum(g.path.name == f.path.name for g in files) > 1
    name = str(f.path) if same_name else f.path.name
    if f.count == 1:
        return [name]
    return [f"{name}[{b}]" for b in range(f.count)]


def _plot_twins(
    path: Path, files: list[_FileRead], records: list[dict[str, Any]], predictor: Any,
    pixel_size: float | None, resample: bool,
) -> None:  # fmt: skip
    """Save each image, as the model saw it, beside its first twins."""
    from heteroagg.plot import save_twins_plot

    shown = records[:PLOT_IMAGES]
    images, labels = [], []
    for record in shown:
        f = next(f for f in files if f.path == record["source"])
        image = f.shown[record["index"]]
        pixel = f.pixel_size_nm if pixel_size is None else pixel_size
        images.append(predictor.prepare(image, pixel, resample)[0])
        labels.append(_image_labels(f, files)[record["index"]])
    save_twins_plot(path, images, predictor.pixel_size_nm, [r["twins"] for r in shown], labels)
    more = (
        f" (the first {PLOT_IMAGES} of {len(records)} images)" if len(records) > len(shown) else ""
    )
    console.print(f"plot: {path}{more}")


def _sample_table(
    pooled: Any, values: dict[str, tuple], space: Any, predictor: Any, shared_error: float
) -> Table:
    """The sample's pooled θ̂ with its one-sigma band; per-aggregate parameters as a range."""
    each = space.denormalize(np.clip(pooled.normalized, 0.0, 1.0))
    rows = []
    for name in predictor.parameters:
        unit = predictor.units.get(name, "")
        if name in values:
            value, low, high = values[name]
            band = "" if low is None else f"{low:.4g} to {high:.4g}"
            rows.append((name, f"{value:.4g}", band, unit))
        else:
            span = each[name]
            rows.append((name, f"per image: {span.min():.4g} to {span.max():.4g}", "", unit))
    band = (
        f"the band for a shared error share of {shared_error:g}"
        if shared_error
        else "the band assumes independent images: a lower bound"
    )
    title = f"θ̂ of the sample, pooled over {pooled.images} images ({band})"
    return _table(title, ("parameter", "estimate", "one-sigma band", "unit"), rows)


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "heteroagg-quickstart"
    ),
    minutes: Annotated[float, typer.Option(help="Total time budget.")] = 20.0,
    train_items: Annotated[
        int | None, typer.Option(help="Training items (default: sized to the budget).")
    ] = None,
    test_items: Annotated[int, typer.Option(help="Test items.")] = 1000,
    twin_images: Annotated[int, typer.Option(help="Test images checked through twins.")] = 100,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
) -> None:
    """The whole method on defaults: data, training, ONNX export, evaluation and twins."""
    try:
        from heteroagg.quickstart import quickstart as run
    except ImportError as err:
        _abort(ImportError(f"quickstart needs the train and onnx extras: {err}"))
    hint = f"{out} keeps what is done; run the same command again to go on from it"
    try:
        with _resumable(hint):
            result = run(out, minutes, train_items=train_items, test_items=test_items,
                         twin_images=twin_images, workers=workers)  # fmt: skip
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        _abort(err)
    ev = result.evaluation
    rows = [(name, f"{m['r2']:.3f}", f"{m['mae']:.3g}") for name, m in ev["parameters"].items()]
    console.print(_table(f"{ev['n_test_images']} test images, through ONNX Runtime",
                         ("parameter", "R²", "MAE"), rows))  # fmt: skip
    hcn = ev["descriptors"]["hetero_coordination_number"]["twin_mean"].get("median_abs")
    if hcn is not None:
        console.print(f"HCN through twins: median relative error {100 * hcn:.1f} %")
    steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.steps.items())
    console.print(f"steps: {steps}")
    console.print(f"model: {result.model}")
    console.print(f"report: {result.report}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover - python -m heteroagg.cli, torchrun -m
    main()
