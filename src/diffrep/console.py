"""What the person at the keyboard sees: progress bars and summaries, never the libraries' tips and notices.

`setup(level)` runs once per command, before any heavy import:
- normal: our progress bars and one summary line per stage; the libraries' known chatter filtered narrowly
  (by category and module or message), so a new, real warning still shows;
- quiet: errors only (stdout discarded, progress bars off);
- verbose: everything the libraries print as well.
Lightning sets its own loggers' levels when it is imported, so `quiet_libraries()` runs after that import.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

LEVEL = "normal"

# (category, message regex, module regex) of warnings that carry nothing for our users
KNOWN_CHATTER = [
    (FutureWarning, r".*isinstance\(treespec, LeafSpec\).*", r"lightning\..*|torch\..*"),
    (UserWarning, r".*does not have many workers.*", r"lightning\..*"),
    (UserWarning, r".*resuming from a checkpoint that ended before the epoch.*", r"lightning\..*"),
    (UserWarning, r".*exists and is not empty.*", r"lightning\..*"),
]
LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric", "diffusers")


def setup(level: str = "normal") -> None:
    global LEVEL
    LEVEL = level
    if level == "verbose":
        return
    for category, message, module in KNOWN_CHATTER:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")  # e.g. "config attributes ... will be ignored"
    if level == "quiet":
        os.environ["TQDM_DISABLE"] = "1"
        sys.stdout = open(os.devnull, "w")


def quiet_libraries() -> None:
    """Lower Lightning's and diffusers' loggers to warnings (their tips, 'GPU available', 'max_steps reached')."""
    if LEVEL == "verbose":
        return
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def progress_enabled(requested: bool = True) -> bool:
    return requested and LEVEL != "quiet"


def bar_on_terminal(show: bool, stream=None) -> bool:
    """Whether a bar that writes to `stream` (default stdout, as Lightning's) is drawn: as `tqdm_disable`, only on
    a terminal."""
    return progress_enabled(show) and (stream or sys.stdout).isatty()


def tqdm_disable(show: bool = True) -> bool | None:
    """tqdm's `disable` for a bar drawn when `show`, unless --quiet, and only on a terminal (None: tqdm checks)."""
    return None if progress_enabled(show) else True


def bar(iterable, show: bool = True, **kwargs):
    """A tqdm progress bar over `iterable`, drawn when `show`, unless --quiet, and only on a terminal."""
    from tqdm.auto import tqdm  # imported here: the CLI imports this module before any heavy work

    return tqdm(iterable, disable=tqdm_disable(show), **kwargs)
