"""Worker pools: bounded submission, Ctrl-C, and workers that end with their parent."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from heteroagg._workers import results_as_completed, stop_pool, worker_pool


def _started(folder: str, k: int) -> int:
    Path(folder, f"{k}.started").touch()
    time.sleep(0.2)
    return k


def test_no_call_beyond_the_limit_starts_once_the_caller_stops(tmp_path):
    pool = worker_pool(2)
    results = results_as_completed(pool, _started, [(str(tmp_path), k) for k in range(20)], 3)
    first = next(results)
    stop_pool(pool, finish=True)  # as after Ctrl-C: the calls held finish, no other starts
    started = sorted(int(p.stem) for p in tmp_path.glob("*.started"))
    assert first in started and len(started) <= 4, started  # 3, and 1 more for the first done


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_a_second_ctrl_c_ends_the_workers_at_once(tmp_path):
    """The first Ctrl-C lets the workers finish what they hold; a second one, while
    they do, ends them and the process at once instead of waiting (or hanging)."""
    script = textwrap.dedent(
        """
        import os, signal, sys, threading, time
        from heteroagg._workers import stop_pool, worker_pool

        # a shell's background jobs start with Ctrl-C ignored: take it as a terminal does
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pool = worker_pool(2)
        held = [pool.submit(time.sleep, 60) for _ in range(2)]
        time.sleep(1.0)  # both workers sleep in their calls
        print(*[p.pid for p in pool._processes.values()], flush=True)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            stop_pool(pool, finish=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert time.monotonic() - start < 20 and done.returncode == 0, done.stderr[-2000:]
    pids, outcome = done.stdout.split("\n")[:2]
    assert outcome == "interrupted"
    assert not any(alive(int(pid)) for pid in pids.split())


def test_readers_end_with_a_killed_training_process(tmp_path):
    """Killing a process while its image store loads leaves no reader behind."""
    from heteroagg.data import DatasetConfig, default_config, generate

    config = default_config().to_dict()
    config["params"]["n_particles"] = {"prior": "uniform", "low": 8, "high": 20}
    config["imaging"].update(pixel_size=1.0, shape=[32, 32])
    generate(DatasetConfig.from_dict(config), 24, tmp_path / "ds", seed=1, shard_size=2,
             progress=False)  # fmt: skip
    script = textwrap.dedent(
        """
        import sys, time
        import numpy as np, torch
        from heteroagg.data.dataset import SyntheticDataset
        from heteroagg.learn.image_store import ImageStore

        plain = SyntheticDataset.shard_images
        SyntheticDataset.shard_images = lambda self, k: (time.sleep(2), plain(self, k))[1]
        ds = SyntheticDataset(sys.argv[1])
        ImageStore(ds, np.arange(len(ds)), "memory", torch.device("cpu"), 2, False)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "ds")])
    time.sleep(4.0)  # the readers are loading
    readers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
    children = [int(pid) for pid in readers.stdout.split()]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert children, "no reader processes were found"
    deadline = time.monotonic() + 10
    while any(map(alive, children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, children))
    for pid in children:  # never leave one behind, whatever the outcome
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
