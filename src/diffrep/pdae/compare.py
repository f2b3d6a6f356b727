"""`diffrep pdae compare`: how much training time each run needs to reach the same random-x_T MSE.

    diffrep pdae fit --eval.every_n_steps 250 --out runs/pdae
    diffrep pdae fit-diffae --eval.every_n_steps 250 --out runs/diffae
    diffrep pdae compare --runs [runs/pdae,runs/diffae] --out runs/pdae-vs-diffae

Reads each run's eval.csv (evaluation.py; a run directory or the file itself). The target is `target_mse`, or by
default the worst of the runs' final MSEs, so that every run reaches it. For each run: the train_seconds and step
of its first evaluation at or below the target (NaN / -1 if never; the resolution is the evaluation interval).
Metrics, keyed by the run directory's name: <name>_seconds_to_target, <name>_steps_to_target, <name>_final_mse,
and target_mse; with two runs, seconds_ratio = the second's seconds / the first's. compare.png plots MSE
against training seconds.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from diffrep.errors import UserError
from diffrep.options import pdae as options
from diffrep.pdae.evaluation import FILE, read_rows
from diffrep.report.plots import plt
from diffrep.run_dir import write_metrics

DEFAULTS = options.COMPARE


def _name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", (path.parent if path.name == FILE else path).name) or "run"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name


def load_runs(runs) -> dict[str, list[dict]]:
    if isinstance(runs, str):
        runs = [runs]
    if not isinstance(runs, list) or not runs:
        raise UserError("pass the runs to compare: --runs [RUN_A,RUN_B] (directories with eval.csv)")
    loaded: dict[str, list[dict]] = {}
    for run in runs:
        path = Path(str(run))
        path = path / FILE if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"{path} not found: train with --eval.every_n_steps N to record it")
        rows = read_rows(path)
        if not rows:
            raise UserError(f"{path} has no evaluations yet")
        loaded[_name(path, set(loaded))] = rows
    return loaded


def time_to(rows: list[dict], target: float) -> tuple[float, int]:
    """(train_seconds, step) of the first evaluation at or below target; (NaN, -1) if none."""
    hit = next((r for r in rows if r["random_xT_mse"] <= target), None)
    return (hit["train_seconds"], hit["step"]) if hit else (math.nan, -1)


def run(cfg: dict) -> dict:
    runs = load_runs(cfg["runs"])
    target = cfg["target_mse"]
    if target is None:
        target = max(rows[-1]["random_xT_mse"] for rows in runs.values())
    elif isinstance(target, bool) or not isinstance(target, (int, float)) or target <= 0:
        raise UserError(f"target_mse must be a positive number, got {target!r}")
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"target_mse": float(target)}
    lines = ["# Training time to the same random-x_T MSE", "", f"Target MSE: {target:.4g}", "",
             "| run | seconds to target | step | final MSE | final step |", "|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for name, rows in runs.items():
        seconds, step = time_to(rows, target)
        metrics |= {f"{name}_seconds_to_target": seconds, f"{name}_steps_to_target": step,
                    f"{name}_final_mse": rows[-1]["random_xT_mse"]}
        lines.append(f"| {name} | {seconds:.1f} | {step} | {rows[-1]['random_xT_mse']:.4g} | {rows[-1]['step']} |")
        ax.plot([r["train_seconds"] for r in rows], [r["random_xT_mse"] for r in rows], marker="o", markersize=3,
                label=name)
    if len(runs) == 2:
        first, second = (metrics[f"{name}_seconds_to_target"] for name in runs)
        metrics["seconds_ratio"] = second / first if first else math.nan
        lines += ["", f"seconds_ratio ({list(runs)[1]} / {list(runs)[0]}): {metrics['seconds_ratio']:.3f}"]
    ax.axhline(target, color="black", linestyle="--", linewidth=1, label="target")
    ax.set(xlabel="training seconds", ylabel="random-x_T MSE", yscale="log", title="in-training evaluation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(out / "compare.png", dpi=120)
    plt.close(fig)
    (out / "report.md").write_text("\n".join(lines + ["", "![compare](compare.png)"]) + "\n")
    print("\n".join(lines[2:]))
    return write_metrics(out, metrics)
