"""`diffrep quickstart`: the main job on the embedded default, in a few minutes on 2 CPU cores.

The shipped teacher's summary and taps (teacher_info.txt), a sample grid (samples.png), a probe of its
features on a Fashion-MNIST subset (probe/: table, heatmaps, report), a short RepFusion distillation (distill/),
a distilled student fine-tuned on 1% of the labels next to a randomly initialised one (finetune-*/), a short PDAE
fit on the frozen teacher (pdae/), and a PDAE model's reconstructions and interpolations (pdae-reconstruct/,
pdae-interpolate/). Each step is one of the full commands with small settings. The student fine-tuned and the
PDAE model shown are the pre-made ones shipped with the teacher (its student/ and pdae/ folders, each with a card
saying how it was made) when there are any; the live training stages then only run a few steps, to show that
the commands work.
"""
from __future__ import annotations

import time
from pathlib import Path

from diffrep import config as config_lib
from diffrep import shipped
from diffrep.dpm.sample import sample, save_grid
from diffrep.errors import UserError
from diffrep.options import quickstart as options
from diffrep.pdae import fit as pdae_fit
from diffrep.pdae import interpolate as pdae_interpolate
from diffrep.pdae import reconstruct as pdae_reconstruct
from diffrep.probe import command as probe_command
from diffrep.repfusion import distill
from diffrep.run_dir import write_metrics
from diffrep.tasks import finetune
from diffrep.tasks.students import load_backbone
from diffrep.teacher import Teacher, teacher_from_config
from diffrep.teacher.info import describe

DEFAULTS = options.QUICKSTART
STUDENT = {"arch": "resnet18", "stem": "imagenet"}  # without a pre-made student; torchvision's stem: fast at 32 px
LIVE_STEPS = 20  # a live stage beside a pre-made model only shows that the command works


def run(cfg: dict) -> dict:
    start = time.perf_counter()
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    teacher = teacher_from_config(cfg["teacher"])

    (out / "teacher_info.txt").write_text(describe(teacher) + "\n")
    print(describe(teacher, max_depth=1))
    print(f"(all {len(teacher.taps)} taps, with the modules inside the blocks: {out / 'teacher_info.txt'})")

    s = cfg["samples"]
    grid = save_grid(sample(teacher.unet, teacher.scheduler, s["n"], s["sampler"], s["steps"], cfg["seed"]),
                     out / "samples.png")
    print(f"samples: {grid}")

    p = cfg["probe"]
    probe_cfg = config_lib.resolve(probe_command.DEFAULTS, None, {
        "teacher": cfg["teacher"], "data": {"train_size": p["train_size"], "test_size": p["test_size"]},
        "timesteps": p["timesteps"], "pool": p["pool"], "seed": cfg["seed"], "out": str(out / "probe")})
    probe = probe_command.run(probe_cfg)

    d, f = cfg["distill"], cfg["finetune"]
    live_student = out / "distill" / "student.safetensors"
    student_file, source = pretrained(d["pretrained"], teacher, "student", live_student)
    # the random arm, and the live distillation, use the architecture of the student shown
    if student_file == live_student:
        student = STUDENT
    else:
        meta = load_backbone(student_file)[1]  # read once: it also checks the file before any training
        student = {"arch": meta["arch"], "stem": meta["stem"]}
    distill_cfg = config_lib.resolve(distill.DEFAULTS, None, {
        "teacher": cfg["teacher"], "student": student, "data": {"labels": d["labels"]},
        "optim": {"batch_size": d["batch_size"]}, "trainer": {"max_steps": live_steps(d["steps"], student_file,
                                                                                       live_student, 100)},
        "seed": cfg["seed"], "out": str(out / "distill"),
        # the students' linear probes on as many images as the teacher's probe above (distill's default is 10k)
        "probe": {"train_size": p["train_size"], "test_size": p["test_size"]}})
    distilled = distill.run(distill_cfg, resume=True)
    print(f"fine-tuning {source}")
    accuracy = {}
    for name, init in (("random", None), ("distilled", str(student_file))):
        ft_cfg = config_lib.resolve(finetune.DEFAULTS, None, {
            "init": init, "student": student if init is None else {}, "data": {
                "labels": f["labels"], "test_size": f["test_size"]},
            "optim": {"batch_size": f["batch_size"], "warmup_steps": 10, "lr": 0.05},
            "trainer": {"max_steps": f["steps"]}, "seed": cfg["seed"], "out": str(out / f"finetune-{name}")})
        accuracy[name] = finetune.run(ft_cfg, resume=True)["test_accuracy"]
    print(f"fine-tuned on {f['labels']:.0%} of the labels for {f['steps']} steps: test accuracy "
          f"{accuracy['distilled']:.2%} from the distilled student, {accuracy['random']:.2%} from random init "
          f"(a short demo; the README's table comes from `diffrep experiment repfusion`)")
    pdae = _pdae(cfg, out, teacher)
    seconds = time.perf_counter() - start
    print(f"quickstart finished in {seconds:.0f} s; everything is in {out}/")
    return write_metrics(out, {"seconds": seconds, "taps": len(teacher.taps),
                               **{f"probe_{key}": probe[key] for key in ("best_accuracy", "best_t", "pixel_accuracy",
                                                                         "random_teacher_best_accuracy")},
                               "distill_t_mean": distilled.get("t_mean", float("nan")),
                               "finetune_distilled_accuracy": accuracy["distilled"],
                               "finetune_random_accuracy": accuracy["random"], **pdae})


def live_steps(steps: int | None, shown: Path, live: Path, alone: int) -> int:
    """Steps of a live training stage: as asked, else LIVE_STEPS when a pre-made model is shown, else `alone`."""
    return steps if steps is not None else alone if shown == live else LIVE_STEPS


def pretrained(given: str | None, teacher: Teacher, kind: str, live: Path) -> tuple[Path, str]:
    """(path, what it is) of the model a stage shows: `given`, else the one shipped with the teacher, else `live`
    (this run's short training)."""
    if given:
        if not Path(given).exists():
            raise UserError(f"pretrained {kind} not found: {given}")
        return Path(given), f"the {kind} {given}"
    shipped_model = shipped.companion(teacher.path, kind)
    if shipped_model is not None:
        return shipped_model, f"the {kind} shipped with the teacher ({shipped_model}; its card says how it was made)"
    return live, f"this run's short {'fit' if kind == 'pdae' else 'distillation'} ({live})"


def _pdae(cfg: dict, out: Path, teacher: Teacher) -> dict:
    """A short PDAE fit on the frozen teacher, then reconstructions and interpolations of test images."""
    p = cfg["pdae"]
    live = out / "pdae" / "model"
    model_dir, source = pretrained(p["pretrained"], teacher, "pdae", live)
    pdae_fit.run(config_lib.resolve(pdae_fit.DEFAULTS, None, {
        "teacher": cfg["teacher"], "optim": {"batch_size": p["batch_size"]},
        "trainer": {"max_steps": live_steps(p["steps"], model_dir, live, 200)}, "seed": cfg["seed"],
        "out": str(out / "pdae")}), resume=True)
    print(f"reconstructing and interpolating with {source}")
    model = str(model_dir)
    steps = p["ddim_steps"]
    rec = pdae_reconstruct.run(config_lib.resolve(pdae_reconstruct.DEFAULTS, None, {
        "model": model, "teacher": cfg["teacher"], "data": {"test_size": p["test_size"]}, "encode_steps": steps,
        "decode_steps": [steps], "random_steps": steps, "seed": cfg["seed"], "out": str(out / "pdae-reconstruct")}))
    pdae_interpolate.run(config_lib.resolve(pdae_interpolate.DEFAULTS, None, {
        "model": model, "teacher": cfg["teacher"], "pairs": p["pairs"], "encode_steps": steps,
        "decode_steps": steps, "seed": cfg["seed"], "out": str(out / "pdae-interpolate")}))
    return {"pdae_inferred_ssim": rec[f"inferred_ssim_{steps}"], "pdae_random_xT_mse": rec["random_xT_mse"],
            "pdae_unconditional_mse": rec["unconditional_mse"]}
