"""Folders written all or nothing: build in a hidden sibling, then publish with a rename.

    with staged(Path("data/new")) as tmp:    # tmp = data/.new.partial-<pid>, fresh and empty
        write_everything_into(tmp)           # an exception (Ctrl-C included) removes tmp and re-raises
    # here data/new holds everything, or, on failure, nothing was ever there

A reader never sees half a dataset or export, and a failed command can simply be run again. The
exporters (wallwm_edge/export) use `staging_dir` / `publish` directly: they publish into a folder that
may already hold other files (a checkpoint's own).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path


def staging_dir(final: Path) -> Path:
    """A fresh hidden folder beside `final` (same file system, so publishing is a rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    return stage


def publish(stage: Path, final: Path) -> None:
    """Move the staged files into `final`: one rename when it does not exist yet, else file by file
    (an existing folder, e.g. the checkpoint's own, keeps its other files)."""
    if not final.exists():
        os.replace(stage, final)
        return
    for f in sorted(stage.iterdir()):
        os.replace(f, final / f.name)
    stage.rmdir()


@contextmanager
def staged(final: Path):
    """Yield a staging folder for `final`; publish it when the block ends, remove it when the block raises."""
    stage = staging_dir(final)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    publish(stage, final)
