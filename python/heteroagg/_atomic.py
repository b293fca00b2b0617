"""Files that are either whole or not there: written beside, then renamed over."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_on_success(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; it replaces ``path`` when the block ends.

    The temporary file keeps ``path``'s suffix (writers such as ``numpy.savez``
    go by it).  If the block raises, or the process is killed, ``path`` keeps
    what it held before, and a failed block's temporary file is removed.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.part{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that it is never seen half written."""
    with replaced_on_success(path) as tmp:
        tmp.write_text(text)
