"""`diffrep experiment repfusion`: distil, fine-tune and tabulate every variant x task x label fraction x seed.

    diffrep experiment repfusion --config configs/experiments/repfusion-fashion-mnist.yaml
    diffrep experiment repfusion --config configs/experiments/repfusion-fmnist-scenes.yaml   # dense tasks

Each variant is a student initialisation: random, or a `diffrep distill` run with the variant's options. Every
initialisation is fine-tuned for each of `tasks` (classify: test accuracy; segment: test mIoU; landmarks: test
NME, lower is better), so the dense tasks share one distillation.
Distillations that use labels (the policy's reward) are run per label fraction and see only that fraction's
labels; the others are shared by every fraction. `fixed:best` is replaced by the best timestep of a linear
probe of the distilled tap (`diffrep.probe.run`, on a subset, cached in best_fixed_t.json). Every run has its
own directory under OUT; a finished run is skipped and an unfinished one resumed, so the whole experiment
resumes where it stopped. Writes OUT/results.csv (one row per fine-tuning), results.md (mean +/- std per
variant, task and fraction, in %) and results.png (one per task, results-TASK.png, when there are several).
With `select` (an option of diffrep finetune and its values, e.g. optim.backbone_lr_ratio: [1.0, 0.1]) every
fine-tuning runs at each value, and each cell reports the value whose mean validation score over the seeds is best:
a setting is picked on images held out of the train split (finetune.data.val), never on the test split.
Several runners may share OUT (e.g. `--labels "[0.01]"` and `--labels "[0.1]"`, one per core): a lock file per
run lets each take the runs nobody else holds, so no run is trained twice; each writes the table of its own runs,
so run the command once more over everything to tabulate it all.
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
from diffrep.device import resolve_device
from diffrep.errors import UserError
from diffrep.options import repfusion as options
from diffrep.options import rules
from diffrep.options import tasks as task_options
from diffrep.probe import best as best_probe
from diffrep.probe import run as probe_run
from diffrep.repfusion import distill
from diffrep.report.plots import grouped_bars
from diffrep.run_dir import write_metrics
from diffrep.tasks import finetune
from diffrep.teacher import teacher_from_config

# task -> (metrics.json key, table name, how to read it)
METRICS = {"classify": ("test_accuracy", "accuracy", "classify: top-1 accuracy, higher is better"),
           "segment": ("test_miou", "mIoU", "segment: mean IoU over classes, higher is better"),
           "landmarks": ("test_nme", "NME", "landmarks: normalised mean error, lower is better")}
LOWER_IS_BETTER = {"landmarks"}

DEFAULTS = options.EXPERIMENT


def _finished(out: Path, key: str) -> bool:
    path = out / "metrics.json"
    return path.is_file() and key in json.loads(path.read_text())


@contextmanager
def _claimed(out: Path, name: str, wait: bool):
    """Holds an exclusive lock on OUT/NAME.lock, yielding True, or yields False at once when another runner holds
    it and wait is false: runners that share OUT (say one per label fraction) each take the runs nobody holds,
    and none trains a run twice."""
    lock = out / f"{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


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
    # on a GPU when there is one: on one CPU thread the 8 timesteps x 12,000 images take over 10 minutes
    teacher = teacher_from_config(cfg["teacher"], resolve_device("auto"))
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


def selected_values(cfg: dict) -> list:
    """The values of `select.option` that every run is fine-tuned at, or [None] without a selection."""
    option, values = cfg["select"]["option"], cfg["select"]["values"]
    if option is None:
        return [None]
    if not isinstance(values, list) or len(values) < 2 or len({str(v) for v in values}) != len(values):
        raise UserError(f"select.values must list at least two distinct values of {option}; got {values!r}")
    if (cfg["finetune"].get("data") or {}).get("val") is None:
        raise UserError("select picks by validation score: set finetune.data.val (images held out of the train split)")
    return values


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _tag(option: str, value) -> str:
    """A run folder's name for one selected value: backbone_lr_ratio0.1."""
    return option.rpartition(".")[2] + _show(value)


def plan(cfg: dict) -> list[dict]:
    """Every fine-tuning run with the distillation it starts from (None: random init)."""
    values = selected_values(cfg)
    names = [v["name"] for v in cfg["variants"]]
    if len(set(names)) != len(names):
        raise UserError(f"variant names must be distinct, got {names}")
    tasks = cfg["tasks"]
    if not isinstance(tasks, list) or not tasks or not set(tasks) <= set(METRICS) or len(set(tasks)) != len(tasks):
        raise UserError(f"tasks must be a list of distinct tasks from {', '.join(METRICS)}; got {tasks!r}")
    runs = []
    for variant in cfg["variants"]:
        uses_labels = bool(variant["distill"]) and variant["distill"].get("timesteps", "policy") == "policy"
        unknown = set(variant) - {"name", "distill", "labels"}
        if unknown:
            raise UserError(f"variant {variant['name']}: keys are name, distill and labels; got {sorted(variant)}")
        # a variant's own fractions run only where they are among this run's (e.g. after --labels "[0.1]")
        fractions = [f for f in variant.get("labels", cfg["labels"]) if f in cfg["labels"]]
        if not fractions:
            print(f"variant {variant['name']}: none of its label fractions {variant.get('labels')} is among "
                  f"{cfg['labels']}; skipped")
        for task in tasks:
            folder = "finetune" if task == "classify" else f"finetune-{task}"
            for fraction in fractions:
                for seed in cfg["seeds"]:
                    source = None
                    if variant["distill"] is not None:
                        tag = f"labels{fraction:g}-" if uses_labels else ""
                        distill_seed = seed if cfg["distill_per_seed"] else cfg["seeds"][0]
                        source = {"name": f"distill/{variant['name']}/{tag}seed{distill_seed}", "seed": distill_seed,
                                  "options": variant["distill"], "labels": fraction if uses_labels else 1.0}
                    name = f"{folder}/{variant['name']}/labels{fraction:g}-seed{seed}"
                    for value in values:
                        tagged = name if value is None else f"{name}/{_tag(cfg['select']['option'], value)}"
                        runs.append({"variant": variant["name"], "task": task, "labels": fraction, "seed": seed,
                                     "distill": source, "select": value, "name": tagged})
    return runs


def _shared_data(cfg: dict) -> dict:
    return {k: v for k, v in cfg["data"].items() if v is not None or k not in ("root", "resolution", "channels")}


def distill_config(cfg: dict, source: dict) -> dict:
    # Distillation and fine-tuning read the same train split, so a label fraction and seed select the same
    # labelled images in both: the policy never sees a label that fine-tuning does not have.
    shared = {"teacher": cfg["teacher"], "data": _shared_data(cfg)}
    return _sub_config(distill.DEFAULTS, shared, cfg["distill"], source["options"], {
        "seed": source["seed"], "data": {"labels": source["labels"], "seed": source["seed"]},
        "out": str(Path(cfg["out"]) / source["name"])})


def finetune_config(cfg: dict, item: dict) -> dict:
    out = Path(cfg["out"])
    init = str(out / item["distill"]["name"] / "student.safetensors") if item["distill"] else None
    selected = {}
    if item["select"] is not None:  # optim.backbone_lr_ratio: 0.1 -> {"optim": {"backbone_lr_ratio": 0.1}}
        *parents, leaf = cfg["select"]["option"].split(".")
        selected = {leaf: item["select"]}
        for part in reversed(parents):
            selected = {part: selected}
    return _sub_config(finetune.DEFAULTS, {"data": _shared_data(cfg)}, cfg["finetune"], selected, {
        "task": item["task"], "init": init, "seed": item["seed"],
        "data": {"labels": item["labels"], "seed": item["seed"]}, "out": str(out / item["name"])})


def check(cfg: dict) -> tuple[list[dict], dict[str, dict]]:
    """The fine-tuning runs and the distillations, each run's options merged and range-checked now, so that a wrong
    key or value in the distill, finetune or select section fails before hours of training rather than when its
    first run starts."""
    runs = plan(cfg)
    distills = {r["distill"]["name"]: r["distill"] for r in runs if r["distill"]}
    for source in distills.values():
        _in_range("distill", distill_config(cfg, source), options.DISTILL_RULES)
    for item in runs:
        _in_range("finetune", finetune_config(cfg, item), task_options.FINETUNE_RULES)
    return runs, distills


def _in_range(section: str, sub_config: dict, option_rules: dict) -> None:
    try:
        rules.check(sub_config, option_rules)
    except UserError as error:
        raise UserError(f"{section}: {error}") from None


def _score_key(item: dict) -> str:
    """The metrics.json key of a finished fine-tuning: its validation score when it is one of a selection's."""
    key = METRICS[item["task"]][0]
    return key if item["select"] is None else key.replace("test_", "val_")


def _run_job(cfg: dict, out: Path, job: tuple, position: str) -> bool:
    """Train one distillation or fine-tuning under its lock, or skip it when it is finished; False (and nothing
    done) when another runner holds it."""
    kind, name, item = job
    with _claimed(out, name, wait=False) as mine:
        if not mine:
            return False
        if kind == "distill":
            run_cfg = distill_config(cfg, item)
            if run_cfg["timesteps"] == "fixed:best":
                run_cfg["timesteps"] = f"fixed:{best_fixed_t(cfg, out, {**run_cfg, 'timesteps': 'policy'})}"
            if _finished(out / name, "train_seconds"):
                print(f"[{position}] {name}: done")
            else:
                print(f"[{position}] {name}")
                distill.run(run_cfg, resume=(out / name).exists())
        elif not _finished(out / name, _score_key(item)):
            print(f"[{position}] {name}")
            finetune.run(finetune_config(cfg, item), resume=(out / name).exists())
    return True


def _distillation_of(job: tuple) -> str | None:
    """The distillation a fine-tuning starts from (None: random init, or the job is a distillation)."""
    kind, _, item = job
    return item["distill"]["name"] if kind == "finetune" and item["distill"] else None


def run(cfg: dict, resume: bool = False) -> dict:
    start = time.perf_counter()
    runs, distills = check(cfg)
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config_lib.dump(cfg))
    print(f"{len(distills)} distillations and {len(runs)} fine-tunings -> {out}")
    # Distillations first, then fine-tunings. A run that another runner holds is passed over and tried again on
    # the next round; a fine-tuning waits for its distillation. With nothing free, wait until the first held run
    # (or the distillation it needs) is let go, then look again.
    jobs = [("distill", name, source) for name, source in distills.items()] + [("finetune", r["name"], r) for r in runs]
    pending = list(range(len(jobs)))
    while pending:
        ready = [i for i in pending
                 if _distillation_of(jobs[i]) is None or _finished(out / _distillation_of(jobs[i]), "train_seconds")]
        taken = {i for i in ready if _run_job(cfg, out, jobs[i], f"{i + 1}/{len(jobs)}")}
        pending = [i for i in pending if i not in taken]
        if pending and not taken:
            held = jobs[ready[0]][1] if ready else _distillation_of(jobs[pending[0]])
            with _claimed(out, held, wait=True):
                pass
    rows = []
    for item in runs:
        metrics = json.loads((out / item["name"] / "metrics.json").read_text())
        key = METRICS[item["task"]][0]
        row = {"variant": item["variant"], "task": item["task"], "labels": item["labels"], "seed": item["seed"],
               "metric": key, "value": metrics[key], "train_images": metrics["train_images"]}
        if item["select"] is not None:
            row |= {"select": item["select"], "val": metrics[_score_key(item)]}
        rows.append(row)
    summary = write_results(rows, cfg, out)
    write_distill_table(distills, out)
    print(f"experiment finished in {time.perf_counter() - start:.0f} s; table in {out / 'results.md'}")
    return summary


# distill metrics.json key -> (column of distill_metrics.md, how to show a value)
DISTILL_COLUMNS = {"t_mode": ("t (mode, last epoch)", "{:.0f}"), "t_entropy": ("t entropy (nats)", "{:.2f}"),
                   "loss_feat": ("distillation loss", "{:.4f}"),
                   "student_probe_accuracy": ("student probe (%)", "{:.2%}"),
                   "random_student_probe_accuracy": ("random student (%)", "{:.2%}")}


def write_distill_table(distills: dict[str, dict], out: Path) -> None:
    """OUT/distill_metrics.md: what each distillation ended with: its timesteps, loss and the linear probes of
    the distilled and of a random student (see `diffrep distill`)."""
    lines = ["| distillation | " + " | ".join(c for c, _ in DISTILL_COLUMNS.values()) + " |",
             "|---|" + "---|" * len(DISTILL_COLUMNS)]
    for name in distills:
        metrics = json.loads((out / name / "metrics.json").read_text())
        # abs: an entropy of 0 comes out as -0.0 or -1e-30
        cells = [fmt.format(abs(metrics[key])).rstrip("%") if key in metrics else "-"
                 for key, (_, fmt) in DISTILL_COLUMNS.items()]
        lines.append(f"| {name.removeprefix('distill/')} | " + " | ".join(cells) + " |")
    intro = "Each distillation's last values (the probes: a linear probe of the frozen, pooled student tap)."
    (out / "distill_metrics.md").write_text(intro + "\n\n" + "\n".join(lines) + "\n")


def picked_values(rows: list[dict]) -> dict:
    """(task, variant, fraction) -> the selected value whose mean validation score over the seeds is best (the
    first listed on a tie)."""
    scores: dict = {}
    for r in rows:
        scores.setdefault((r["task"], r["variant"], r["labels"]), {}).setdefault(r["select"], []).append(r["val"])
    sign = {task: -1 if task in LOWER_IS_BETTER else 1 for task in METRICS}
    return {cell: max(by_value, key=lambda v: sign[cell[0]] * statistics.mean(by_value[v]))
            for cell, by_value in scores.items()}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _selection_table(rows: list[dict], cfg: dict, picked: dict, columns: list[tuple]) -> list[str]:
    """Every selected value's test score (mean +/- std) and mean validation score, the picked one starred."""
    option = cfg["select"]["option"]
    lines = [f"Every value of {option}: test score, mean +/- std (mean validation score); * the value picked.", "",
             f"| student init | {option} | " + " | ".join(f"{METRICS[t][1]}, {f:g} labels" for t, f in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for v in [v["name"] for v in cfg["variants"]]:
        for value in cfg["select"]["values"]:
            cells = []
            for t, f in columns:
                cell = [r for r in rows if (r["task"], r["variant"], r["labels"], r["select"]) == (t, v, f, value)]
                if not cell:
                    cells.append("-")
                    continue
                mean, std = _mean_std([100 * r["value"] for r in cell])
                val = statistics.mean(100 * r["val"] for r in cell)
                star = " *" if picked[t, v, f] == value else ""
                cells.append(f"{mean:.2f} +/- {std:.2f} ({val:.2f}){star}")
            lines.append(f"| {v} | {_show(value)} | " + " | ".join(cells) + " |")
    return lines


def write_results(rows: list[dict], cfg: dict, out: Path) -> dict:
    """results.csv, results.md, the bar plots and the summary; with a selection, each cell is the picked value's."""
    picked = picked_values(rows) if cfg["select"]["option"] else {}
    for r in rows if picked else []:
        r["picked"] = r["select"] == picked[r["task"], r["variant"], r["labels"]]
    with (out / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    shown = [r for r in rows if r.get("picked", True)]
    variants, fractions, tasks = [v["name"] for v in cfg["variants"]], cfg["labels"], cfg["tasks"]
    stats = {}
    for task in tasks:
        for v in variants:
            for f in fractions:
                values = [100 * r["value"] for r in shown if (r["task"], r["variant"], r["labels"]) == (task, v, f)]
                if values:  # a variant restricted to some fractions has no cell for the others
                    stats[task, v, f] = _mean_std(values)
    columns = [(task, f) for task in tasks for f in fractions]
    lines = ["| student init | " + " | ".join(f"{METRICS[t][1]}, {f:g} labels" for t, f in columns) + " |",
             "|---|" + "---|" * len(columns)]
    leaf = cfg["select"]["option"] and cfg["select"]["option"].rpartition(".")[2]

    def cell(t, v, f):
        if (t, v, f) not in stats:
            return "-"
        return f"{stats[t, v, f][0]:.2f} +/- {stats[t, v, f][1]:.2f}" + (
            f" ({leaf} {_show(picked[t, v, f])})" if picked else "")

    for v in variants:
        lines.append(f"| {v} | " + " | ".join(cell(t, v, f) for t, f in columns) + " |")
    seeds = ", ".join(map(str, cfg["seeds"]))
    how = (f" Each cell at the {cfg['select']['option']} of best mean validation score, picked per variant, task "
           f"and fraction from {', '.join(map(_show, cfg['select']['values']))}." if picked else "")
    text = (f"Test scores (%), mean +/- std over seeds {seeds}. {'; '.join(METRICS[t][2] for t in tasks)}.{how}\n\n"
            + "\n".join(lines) + "\n")
    if picked:
        text += "\n" + "\n".join(_selection_table(rows, cfg, picked, columns)) + "\n"
    (out / "results.md").write_text(text)
    for task in tasks:
        bars = {f"{f:g} labels": {v: stats[task, v, f] for v in variants if (task, v, f) in stats} for f in fractions}
        grouped_bars(bars, out / ("results.png" if len(tasks) == 1 else f"results-{task}.png"),
                     ylabel=f"test {METRICS[task][1]} (%)",
                     title=f"{task}: student initialisation (mean +/- std over seeds)")
    # classification keeps its historical keys (VARIANT_labelsF_mean); other tasks prefix theirs
    prefix = {t: "" if t == "classify" else f"{t}_" for t in tasks}
    summary = {f"{prefix[t]}{v}_labels{f:g}_mean": mean for (t, v, f), (mean, _) in stats.items()}
    summary |= {f"{prefix[t]}{v}_labels{f:g}_std": std for (t, v, f), (_, std) in stats.items()}
    summary |= {f"{prefix[t]}{v}_labels{f:g}_picked": value for (t, v, f), value in picked.items()}
    return write_metrics(out, summary)
