"""The teachers that ship with diffrep, by name (plain Python: the CLI checks names before any heavy import).

`--teacher NAME` takes a folder name under src/diffrep/teachers/ or an alias; the default is DEFAULT.
"""
from __future__ import annotations

from pathlib import Path

TEACHERS = Path(__file__).resolve().parent / "teachers"
DEFAULT = "fashion-mnist-v2"
ALIASES = {"fashion-mnist-v1": "fashion-mnist"}  # the first teacher's folder keeps its name, for older saved models


def names() -> list[str]:
    return sorted({p.name for p in TEACHERS.iterdir() if (p / "config.json").is_file()} | set(ALIASES))


def shipped_teacher(name: str) -> Path | None:
    """The folder of a shipped teacher's name, or None when `name` names none."""
    folder = TEACHERS / ALIASES.get(name, name)
    return folder if "/" not in name and (folder / "config.json").is_file() else None


def name_of(path: str | Path | None) -> str | None:
    """The name of a shipped teacher's folder (what a saved model records, so that it loads on any machine)."""
    if path is None:
        return None
    folder = Path(path).resolve()
    return folder.name if shipped_teacher(folder.name) == folder else None


# Models made from a shipped teacher and shipped in its folder, so that the quickstart can show them without
# training them: kind -> (subfolder, the file that must be there).
COMPANIONS = {"pdae": ("pdae", "config.json"), "student": ("student", "student.safetensors")}


def companion(teacher_folder: str | Path | None, kind: str) -> Path | None:
    """The PDAE model folder ("pdae") or distilled student file ("student") shipped beside a teacher; None if none."""
    if teacher_folder is None:
        return None
    sub, required = COMPANIONS[kind]
    path = Path(teacher_folder) / sub / required
    if not path.is_file():
        return None
    return path.parent if kind == "pdae" else path

