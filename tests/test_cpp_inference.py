"""examples/cpp_inference: built and run against an exported model when ONNX Runtime's
C/C++ headers can be found (ONNXRUNTIME_ROOT), else skipped with the reason."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cpp_inference"


def _onnxruntime_headers() -> Path | None:
    roots = [os.environ.get("ONNXRUNTIME_ROOT"), "/usr", "/usr/local"]
    for root in filter(None, roots):
        for sub in ("include", "include/onnxruntime"):
            if (Path(root) / sub / "onnxruntime_cxx_api.h").exists():
                return Path(root)
    return None


def _wheel_library() -> Path | None:
    found = sorted((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so*"))
    return found[0] if found else None


def test_cpp_example_runs_the_exported_model(tiny_run, tiny_test, tmp_path):
    root = _onnxruntime_headers()
    if root is None or shutil.which("cmake") is None:
        pytest.skip(
            "ONNX Runtime's C/C++ headers were not found (set ONNXRUNTIME_ROOT to an unpacked "
            "onnxruntime release); see docs/deploy.md for building examples/cpp_inference"
        )
    from heteroagg.deploy import Predictor, export_onnx

    model = tmp_path / "model.onnx"
    export_onnx(tiny_run, model)
    build = tmp_path / "build"
    args = ["cmake", "-S", str(EXAMPLE), "-B", str(build), f"-DONNXRUNTIME_ROOT={root}"]
    library = _wheel_library()
    if not list(root.glob("lib*/libonnxruntime.so*")) and library is not None:
        args.append(f"-DONNXRUNTIME_LIBRARY={library}")
    subprocess.run(args, check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    # the wheel's library is named libonnxruntime.so.1.x; the program asks for its soname
    links = tmp_path / "lib"
    links.mkdir()
    for found in [*root.glob("lib*/libonnxruntime.so*"), *filter(None, [library])]:
        for name in ("libonnxruntime.so.1", "libonnxruntime.so"):
            if not (links / name).exists():
                (links / name).symlink_to(found.resolve())
    env = {**os.environ, "LD_LIBRARY_PATH": f"{links}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    run = subprocess.run([str(build / "heteroagg_infer"), str(model), "2"], capture_output=True,
                         text=True, check=True, env=env)  # fmt: skip
    lines = [line for line in run.stdout.splitlines() if line.startswith("image ")]
    assert len(lines) == 2
    predictor = Predictor(model, providers="cpu")
    assert predictor.parameters[0] in lines[0]
    values = [float(item.split("=")[1]) for item in lines[0].split()[2:]]
    assert len(values) == len(predictor.parameters) and np.all(np.isfinite(values))
