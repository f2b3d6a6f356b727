"""The output directory of a command: checked before any work, marked FAILED when a started run fails.

Everything here is plain Python (no torch), so a bad --out is reported at once.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from diffrep.errors import UserError

FAILED = "FAILED"
RUN_FILES = ("config.yaml", "metrics.json", FAILED)  # what makes a folder a diffrep run that --overwrite may delete


def check_out(path: str | Path) -> Path:
    """A path where a folder can be created or reused: not a file, not under a file, writable."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"--out {out} lies under {ancestor}, which is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write to {ancestor}")
    return out


def claim(out: str | Path, resume: bool, overwrite: bool, resumable: bool) -> Path:
    """Check --out and apply --overwrite; a folder holding a failed run needs --resume or --overwrite."""
    out = check_out(out)
    if overwrite and out.is_dir() and any(out.iterdir()):
        if not any((out / name).exists() for name in RUN_FILES):
            raise UserError(f"--overwrite: {out} does not look like a diffrep run (no config.yaml or metrics.json), "
                            f"so it is left alone; choose another --out")
        shutil.rmtree(out)
    elif (out / FAILED).is_file() and not resume:
        ways = "--resume to continue it or --overwrite to start again" if resumable else "--overwrite to start again"
        raise UserError(f"{out} holds a run that failed ({_first_line(out / FAILED)}); pass {ways}")
    return out


@contextmanager
def locked(out: str | Path):
    """Hold a lock on the folder OUT itself (no file is written) while training in it, or stop with one line when
    another process holds it: two runs in one folder overwrite each other's checkpoint and logs (a --resume started
    while the stopped run still winds down; Lightning finishes the step it is in before it acts on SIGTERM).
    Data-parallel workers train under rank 0's lock."""
    if os.environ.get("LOCAL_RANK", "0") != "0":
        yield
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{out} is in use by another diffrep process; wait for it to end or stop it, "
                            f"or choose another --out") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def mark_failed(out: str | Path, error: BaseException) -> None:
    """Leave OUT/FAILED with the error when a run that created or used OUT stops on an error."""
    out = Path(out)
    if out.is_dir():
        text = str(error).strip() or type(error).__name__
        (out / FAILED).write_text(f"{type(error).__name__}: {text}\n")


def clear_failed(out: str | Path) -> None:
    (Path(out) / FAILED).unlink(missing_ok=True)


def _first_line(path: Path) -> str:
    lines = path.read_text().strip().splitlines()
    return lines[0] if lines else "no message"


def honour_umask(path: str | Path) -> Path:
    """Give a file (or every file in a folder) the usual permissions: safetensors writes files readable by their
    owner only (0600), where every other output follows the umask (0644 with the common 022)."""
    path = Path(path)
    mask = os.umask(0)
    os.umask(mask)
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        file.chmod(0o666 & ~mask)
    return path


def write_metrics(out: str | Path, metrics: dict) -> dict:
    """OUT/metrics.json: a flat object of numbers, merged with what the run wrote before, replaced atomically. A None
    (not measured by this process, e.g. a resumed run that had no step left to train) keeps the earlier value."""
    path = Path(out) / "metrics.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update({k: (float(v) if not isinstance(v, (int, str)) else v) for k, v in metrics.items() if v is not None})
    write_text_atomic(path, json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return merged


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
