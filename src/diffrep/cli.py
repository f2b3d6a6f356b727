"""The `diffrep` command.

Every training or analysis command takes --config FILE.yaml and dotted overrides of any option
(--data.labels 0.01, --trainer.max_steps 200); `diffrep COMMAND --help` lists its options and defaults.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from diffrep import __version__, console, run_dir, shipped
from diffrep import config as config_lib
from diffrep.errors import UserError
from diffrep.options import rules
from diffrep.options.comments import option_comments

# command words -> (module with run(cfg, ...), its options as "module:NAME" (NAME_RULES beside it), one-line help,
# takes --resume). Options live in diffrep.options, which imports no torch: --help and option errors are instant,
# and a command's module is imported only when it runs.
CONFIGURED = {
    ("dpm", "fit"): ("diffrep.dpm.fit", "dpm:FIT", "train a DDPM (epsilon prediction, EMA) on a named dataset", True),
    ("dpm", "sample"): ("diffrep.dpm.sample_command", "dpm:SAMPLE",
                        "sample a DDPM with DDPM or DDIM to a PNG grid", False),
    ("probe",): ("diffrep.probe.command", "probe:PROBE_COMMAND",
                 "linear-probe a teacher's features over timesteps, taps and inputs", False),
    ("features",): ("diffrep.probe.store_command", "probe:FEATURES",
                    "store a teacher's pooled or full features of a data set on disk, for probes without it", True),
    ("finetune",): ("diffrep.tasks.finetune", "tasks:FINETUNE",
                    "fine-tune a student (random or distilled backbone) on labelled data", True),
    ("distill",): ("diffrep.repfusion.distill", "repfusion:DISTILL",
                   "RepFusion: distil a teacher's features into a student", True),
    ("experiment", "repfusion"): ("diffrep.repfusion.experiment", "repfusion:EXPERIMENT",
                                  "RepFusion vs random init: every variant x label fraction x seed, one table", True),
    ("pdae", "fit"): ("diffrep.pdae.fit", "pdae:FIT",
                      "PDAE: learn a semantic encoder and a gradient estimator on a frozen DPM", True),
    ("pdae", "fit-diffae"): ("diffrep.pdae.baseline", "pdae:FIT_DIFFAE",
                             "the Diff-AE baseline: the same encoder with a z-conditioned UNet trained from scratch",
                             True),
    ("pdae", "reconstruct"): ("diffrep.pdae.reconstruct", "pdae:RECONSTRUCT",
                              "autoencode test images through z (inferred and random x_T): SSIM, PSNR, MSE", False),
    ("pdae", "interpolate"): ("diffrep.pdae.interpolate", "pdae:INTERPOLATE",
                              "decode between pairs of test images (slerp x_T, lerp z)", False),
    ("pdae", "manipulate"): ("diffrep.pdae.manipulate", "pdae:MANIPULATE",
                             "move z along a linear classifier's class direction and decode", False),
    ("pdae", "encode"): ("diffrep.pdae.encode", "pdae:ENCODE",
                         "z of a data set to safetensors / .npy, and a linear probe of z", False),
    ("pdae", "gap"): ("diffrep.pdae.gap", "pdae:GAP",
                      "the posterior-mean gap per timestep, with and without the shift G", False),
    ("pdae", "compare"): ("diffrep.pdae.compare", "pdae:COMPARE",
                          "training time two runs' in-training evaluations need to reach the same random-x_T MSE",
                          False),
    ("quickstart",): ("diffrep.quickstart", "quickstart:QUICKSTART", "the main job on the shipped teacher: info, "
                      "samples, a probe, a short distillation and a short PDAE fit", False),
}
GROUPS = {"teacher": "inspect a pre-trained DPM", "dpm": "train and sample a DDPM of your own",
          "experiment": "the experiments behind the README's tables, resumable",
          "pdae": "PDAE: autoencode images through a frozen pre-trained DPM"}
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # owner/name, resolved through the local Hugging Face cache


def options(spec: str) -> tuple[dict, dict]:
    """(DEFAULTS, RULES) of a command from its "module:NAME" in diffrep.options."""
    module_name, name = spec.split(":")
    module = importlib.import_module(f"diffrep.options.{module_name}")
    return getattr(module, name), getattr(module, f"{name}_RULES")


class _Parser(argparse.ArgumentParser):
    """Lists a command's options (its DEFAULTS) in its help."""

    options_spec: str | None = None

    def error(self, message):
        """argparse prints its usage before the error; one line says enough (and --help says the rest)."""
        raise UserError(f"{message} (see {self.prog} --help)")

    def format_help(self):
        if self.options_spec and not self.epilog:
            defaults, _ = options(self.options_spec)
            module, name = self.options_spec.split(":")
            notes = option_comments(module, name, list(config_lib.flatten(defaults)))
            self.epilog = ("options (override with --KEY VALUE; defaults shown):\n"
                           + config_lib.describe(defaults, notes))
        return super().format_help()


def _subcommands(parser):
    return parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)


def _add_configured(sub, word, module_name, spec, help_text, resumable):
    parser = sub.add_parser(word, help=help_text, description=help_text,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.options_spec = spec
    parser.add_argument("--config", help="YAML file of options, applied over the defaults")
    parser.add_argument("--data", dest="data_name", metavar="NAME",
                        help="dataset, for commands that read one: fashion-mnist, digits, imagefolder:PATH, "
                             "cifar10:PATH")
    parser.add_argument("--teacher", dest="teacher_path", metavar="PATH",
                        help="a diffusers folder, an ADM .pt, a pipeline folder or owner/name in the Hugging Face "
                             "cache (default: the shipped teacher); also --teacher.flags, --teacher.preset, "
                             "--teacher.conditioning")
    parser.add_argument("--out", dest="out_dir", metavar="DIR", help="output directory")
    if resumable:
        parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete what an earlier run left in OUT (a diffrep run folder) and start again")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("--quiet", action="store_true", help="print errors only: no progress bars, no summaries")
    loudness.add_argument("--verbose", action="store_true",
                          help="also print what the libraries underneath say (warnings, Lightning's notices)")
    parser.set_defaults(_module=module_name, _options=spec, _resumable=resumable)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="diffrep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"diffrep {__version__}")
    top = _subcommands(parser)
    groups = {name: _subcommands(top.add_parser(name, help=text, description=text)) for name, text in GROUPS.items()}

    info = groups["teacher"].add_parser("info", help="architecture summary and every tap with its output shape")
    info.add_argument("path", nargs="?", help="diffusers UNet2DModel or pipeline folder, ADM .pt checkpoint or "
                      "Hugging Face id in the local cache (default: the shipped teacher)")
    info.add_argument("--flags", help='ADM checkpoints: the release flags, "--image_size 64 --num_channels 192 ..."')
    info.add_argument("--preset", help="ADM checkpoints: a release's flags (adm-imagenet-64, ...); without PATH, "
                      "the architecture with random weights")
    info.add_argument("--conditioning", help="latent UNets: empty-prompt, zeros or an embedding file; DiT and "
                      "class-conditional ADM: a class id")
    info.add_argument("--depth", type=int, default=None,
                      help="only list taps with at most this many named parts "
                           "(1: blocks such as down_blocks.0; 2: down_blocks.0.resnets.1; default: all)")
    info.set_defaults(_handler="diffrep.teacher.info:main")

    for words, (module_name, spec, help_text, resumable) in CONFIGURED.items():
        _add_configured(groups[words[0]] if len(words) > 1 else top, words[-1], module_name, spec, help_text,
                        resumable)
    return parser


def check_inputs(cfg: dict) -> None:
    """The paths a command reads, checked before any heavy import: each missing one is one line at once."""
    teacher = cfg.get("teacher")
    path = teacher.get("path") if isinstance(teacher, dict) else teacher
    if isinstance(path, str) and not Path(path).exists() and not HUB_ID.fullmatch(path) and \
            not shipped.shipped_teacher(path):
        raise UserError(f"teacher not found: {path} (expected a diffusers folder, an ADM .pt checkpoint, an "
                        f"owner/name in the local Hugging Face cache, or a shipped teacher: "
                        f"{', '.join(shipped.names())})")
    for key, what in (("init", "backbone or model"), ("model", "saved autoencoder")):
        value = cfg.get(key)
        if isinstance(value, str) and value and not Path(value).exists() and not shipped.shipped_teacher(value):
            raise UserError(f"{key} not found: {value} (expected a {what})")
    for stage, block in cfg.items():  # the quickstart's pre-made models
        value = block.get("pretrained") if isinstance(block, dict) else None
        if isinstance(value, str) and value and not Path(value).exists():
            raise UserError(f"{stage}.pretrained not found: {value}")
    data = cfg.get("data")
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        kind, _, folder = data["name"].partition(":")
        if kind in ("imagefolder", "cifar10", "celebamask-hq", "wflw") and folder and not Path(folder).is_dir():
            label = "image folder" if kind == "imagefolder" else f"{kind} folder"
            raise UserError(f"{label} not found: {folder}")


def _run(module_name: str, cfg: dict, resumable: bool, resume: bool, overwrite: bool, title: str = ""):
    out = run_dir.claim(cfg["out"], resume, overwrite, resumable) if "out" in cfg else None
    existed = out is not None and out.exists()
    stamp = _stamp(out)
    module = importlib.import_module(module_name)
    try:
        result = module.run(cfg, **({"resume": resume} if resumable else {}))
    except (Exception, KeyboardInterrupt) as err:
        # A run that created or rewrote OUT leaves a FAILED marker; a failed check before any work leaves nothing.
        if out is not None and out.exists() and (not existed or _stamp(out) != stamp):
            run_dir.mark_failed(out, err)
        raise
    if out is not None and out.is_dir():
        run_dir.clear_failed(out)
        from diffrep.report.html import write_index  # markdown, imported once the work is done
        write_index(out, f"diffrep {title}: {out.name}")
    return result


def _stamp(out: Path | None):
    config = out / "config.yaml" if out is not None else None
    return config.stat().st_mtime_ns if config is not None and config.exists() else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if hasattr(args, "_handler"):
            if extra:
                raise UserError(f"unrecognized arguments: {' '.join(extra)}")
            console.setup("normal")
            module_name, func = args._handler.split(":")
            return getattr(importlib.import_module(module_name), func)(args) or 0
        defaults, option_rules = options(args._options)
        shortcuts = []
        for flag, value, key in (("--data", args.data_name, "data.name"),
                                 ("--teacher", args.teacher_path, "teacher.path"), ("--out", args.out_dir, "out")):
            if value is not None:
                if key.split(".")[0] not in defaults:
                    raise UserError(f"this command takes no {flag}")
                shortcuts += [f"--{key}", value]
        cfg = rules.check(config_lib.resolve(defaults, args.config, shortcuts + extra), option_rules)
        check_inputs(cfg)
        console.setup("quiet" if args.quiet else "verbose" if args.verbose else "normal")
        _run(args._module, cfg, args._resumable, getattr(args, "resume", False), args.overwrite,
             " ".join(argv[:2] if argv[0] in GROUPS else argv[:1]))
        return 0
    except UserError as err:
        print(f"diffrep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffrep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
