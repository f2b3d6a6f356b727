"""`diffrep experiment repfusion`: distil, fine-tune and tabulate every variant x label fraction x seed.

    diffrep experiment repfusion --config configs/experiments/repfusion-fashion-mnist.yaml

Each variant is a student initialisation: random, or a `diffrep distill` run with the variant's options.
Distillations that use labels (the policy's reward) are run per label fraction and see only that fraction's
labels; the others are shared by every fraction. `fixed:best` is replaced by the best timestep of a linear
probe of the distilled tap (`diffrep.probe.run`, on a subset, cached in best_fixed_t.json). Every run has its
own directory under OUT; a finished run is skipped and an unfinished one resumed, so the whole experiment
resumes where it stopped. Writes OUT/results.csv (one row per fine-tuning), results.md (mean +/- std per
variant and fraction) and results.png. Several runners may share OUT (e.g. `--labels "[0.01]"` and
`--labels "[0.1]"` on two devices): a lock file per run makes them take turns on the runs they share; each
writes the table of its own runs, so run the command once more over everything to tabulate it all.
"""
from __future__ import annotations

import copy
import csv
import fcntl
import json
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

from diffrep import config as config_lib
from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.probe import best as best_probe
from diffrep.probe import run as probe_run
from diffrep.repfusion import distill
from diffrep.report.plots import grouped_bars
from diffrep.tasks import finetune
from diffrep.teacher import load_teacher
from diffrep.train import write_metrics

DEFAULTS = {
    "teacher": None,                 # default: the shipped teacher
    "data": {"name": "fashion-mnist", "train_size": None, "test_size": None},  # shared by every run (see run)
    "labels": [0.01, 0.1],           # label fractions for fine-tuning (and for the policy's reward)
    "seeds": [0, 1, 2],
    "distill_per_seed": True,        # false: one distillation (the first seed) shared by every fine-tuning seed
    "variants": [                    # name + distill options (null: random init, no distillation); a variant's
                                     # own `labels` list runs it on those fractions only
        {"name": "random_init", "distill": None},
        {"name": "policy_clean", "distill": {"timesteps": "policy", "teacher_input": "clean"}},
        {"name": "policy_noised", "distill": {"timesteps": "policy", "teacher_input": "noised"}},
        {"name": "uniform", "distill": {"timesteps": "uniform:0-999"}},
        {"name": "best_fixed", "distill": {"timesteps": "fixed:best"}},
    ],
    "distill": {},                   # options for every distillation (see diffrep distill --help)
    "finetune": {},                  # options for every fine-tuning (see diffrep finetune --help)
    "best_fixed": {"train_size": 10000, "test_size": 2000, "timesteps": None},  # the probe that picks t
    "out": "runs/experiments/repfusion",
}


def _finished(out: Path, key: str) -> bool:
    path = out / "metrics.json"
    return path.is_file() and key in json.loads(path.read_text())


@contextmanager
def _claimed(out: Path, name: str):
    """Holds an exclusive lock on OUT/NAME.lock: runners that share OUT (say one per label fraction, on two
    devices) take turns on a run they both need, and the second finds it finished instead of training it again."""
    lock = out / f"{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another runner to finish {name}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _sub_config(defaults: dict, *updates: dict) -> dict:
    cfg = copy.deepcopy(defaults)
    for update in updates:
        cfg = config_lib.merge(cfg, update, "experiment")
    return cfg


def best_fixed_t(cfg: dict, out: Path, distill_cfg: dict) -> int:
    """The best timestep of a linear probe of the distilled tap with the variant's teacher input, cached."""
    cache = out / "best_fixed_t.json"
    if cache.is_file():
        return json.loads(cache.read_text())["t"]
    teacher = load_teacher(cfg["teacher"])
    resolved = distill.resolve(distill_cfg, teacher)
    p = cfg["best_fixed"]
    data = {**resolved["data"], "train_size": p["train_size"], "test_size": p["test_size"]}
    rows = probe_run(teacher, data_lib.load(data, "train"), data_lib.load(data, "test"), p["timesteps"],
                     [resolved["teacher_tap"]], [resolved["teacher_input"]], "gap", random_teacher=False,
                     seed=resolved["seed"], progress=True)
    top = best_probe(rows)
    cache.write_text(json.dumps({"t": top["t"], "accuracy": top["accuracy"], "tap": top["tap"],
                                 "input": top["input"], "rows": rows}, indent=2) + "\n")
    print(f"best fixed t: {top['t']} (linear probe {top['accuracy']:.4f} on {resolved['teacher_tap']})")
    return top["t"]


def plan(cfg: dict) -> list[dict]:
    """Every fine-tuning run with the distillation it starts from (None: random init)."""
    names = [v["name"] for v in cfg["variants"]]
    if len(set(names)) != len(names):
        raise UserError(f"variant names must be distinct, got {names}")
    runs = []
    for variant in cfg["variants"]:
        uses_labels = bool(variant["distill"]) and variant["distill"].get("timesteps", "policy") == "policy"
        fractions = variant.get("labels", cfg["labels"])
        unknown = set(variant) - {"name", "distill", "labels"}
        if unknown or not set(fractions) <= set(cfg["labels"]):
            raise UserError(f"variant {variant['name']}: keys are name, distill and labels (a subset of "
                            f"{cfg['labels']}); got {sorted(variant)} with labels {fractions}")
        for fraction in fractions:
            for seed in cfg["seeds"]:
                source = None
                if variant["distill"] is not None:
                    tag = f"labels{fraction:g}-" if uses_labels else ""
                    distill_seed = seed if cfg["distill_per_seed"] else cfg["seeds"][0]
                    source = {"name": f"distill/{variant['name']}/{tag}seed{distill_seed}", "seed": distill_seed,
                              "options": variant["distill"],
                              "labels": fraction if uses_labels else 1.0}
                runs.append({"variant": variant["name"], "labels": fraction, "seed": seed, "distill": source,
                             "name": f"finetune/{variant['name']}/labels{fraction:g}-seed{seed}"})
    return runs


def run(cfg: dict, resume: bool = False) -> dict:
    start = time.perf_counter()
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config_lib.dump(cfg))
    runs = plan(cfg)
    distills = {r["distill"]["name"]: r["distill"] for r in runs if r["distill"]}
    total = len(distills) + len(runs)
    print(f"{len(distills)} distillations and {len(runs)} fine-tunings -> {out}")
    # Distillation and fine-tuning read the same train split, so a label fraction and seed select the same
    # labelled images in both: the policy never sees a label that fine-tuning does not have.
    shared = {"teacher": cfg["teacher"], "data": dict(cfg["data"])}
    done = 0
    for name, source in distills.items():
        done += 1
        seed = source["seed"]
        run_cfg = _sub_config(distill.DEFAULTS, shared, cfg["distill"], source["options"], {
            "seed": seed, "data": {"labels": source["labels"], "seed": seed}, "out": str(out / name)})
        with _claimed(out, name):
            if run_cfg["timesteps"] == "fixed:best":
                run_cfg["timesteps"] = f"fixed:{best_fixed_t(cfg, out, {**run_cfg, 'timesteps': 'policy'})}"
            if _finished(out / name, "train_seconds"):
                print(f"[{done}/{total}] {name}: done")
                continue
            print(f"[{done}/{total}] {name}")
            distill.run(run_cfg, resume=(out / name).exists())
    rows = []
    for item in runs:
        done += 1
        ft_out = out / item["name"]
        init = str(out / item["distill"]["name"] / "student.safetensors") if item["distill"] else None
        run_cfg = _sub_config(finetune.DEFAULTS, {"data": shared["data"]}, cfg["finetune"], {
            "init": init, "seed": item["seed"], "data": {"labels": item["labels"], "seed": item["seed"]},
            "out": str(ft_out)})
        with _claimed(out, item["name"]):
            if not _finished(ft_out, "test_accuracy"):
                print(f"[{done}/{total}] {item['name']}")
                finetune.run(run_cfg, resume=ft_out.exists())
        metrics = json.loads((ft_out / "metrics.json").read_text())
        rows.append({"variant": item["variant"], "labels": item["labels"], "seed": item["seed"],
                     "test_accuracy": metrics["test_accuracy"], "train_images": metrics["train_images"]})
    summary = write_results(rows, cfg, out)
    print(f"experiment finished in {time.perf_counter() - start:.0f} s; table in {out / 'results.md'}")
    return summary


def write_results(rows: list[dict], cfg: dict, out: Path) -> dict:
    with (out / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    variants, fractions = [v["name"] for v in cfg["variants"]], cfg["labels"]
    stats = {}
    for v in variants:
        for f in fractions:
            accs = [r["test_accuracy"] for r in rows if r["variant"] == v and r["labels"] == f]
            if accs:  # a variant restricted to some fractions has no cell for the others
                stats[v, f] = (statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0, len(accs))
    lines = ["| student init | " + " | ".join(f"{f:g} labels" for f in fractions) + " |",
             "|---|" + "---|" * len(fractions)]
    for v in variants:
        lines.append(f"| {v} | " + " | ".join(f"{100 * stats[v, f][0]:.2f} +/- {100 * stats[v, f][1]:.2f}"
                                                if (v, f) in stats else "-" for f in fractions) + " |")
    seeds = ", ".join(map(str, cfg["seeds"]))
    (out / "results.md").write_text(f"Test accuracy (%), mean +/- std over seeds {seeds}.\n\n"
                                    + "\n".join(lines) + "\n")
    bars = {f"{f:g} labels": {v: (100 * stats[v, f][0], 100 * stats[v, f][1]) for v in variants if (v, f) in stats}
            for f in fractions}
    grouped_bars(bars, out / "results.png", ylabel="test accuracy (%)",
                 title="student initialisation vs label fraction (mean +/- std over seeds)")
    summary = {f"{v}_labels{f:g}_mean": mean for (v, f), (mean, _, _) in stats.items()}
    summary |= {f"{v}_labels{f:g}_std": std for (v, f), (_, std, _) in stats.items()}
    return write_metrics(out, summary)
