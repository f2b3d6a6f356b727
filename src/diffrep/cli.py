"""The `diffrep` command.

Every training or analysis command takes --config FILE.yaml and dotted overrides of any option
(--data.labels 0.01, --trainer.max_steps 200); `diffrep COMMAND --help` lists its options and defaults.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from diffrep import __version__
from diffrep import config as config_lib
from diffrep.errors import UserError

# command words -> (module with DEFAULTS and run(cfg, ...), one-line help, takes --resume).
# A module is imported only when its command runs or prints its help, so `diffrep --help` is instant.
CONFIGURED = {
    ("dpm", "fit"): ("diffrep.dpm.fit", "train a DDPM (epsilon prediction, EMA) on a named dataset", True),
    ("dpm", "sample"): ("diffrep.dpm.sample_command", "sample a DDPM with DDPM or DDIM to a PNG grid", False),
    ("probe",): ("diffrep.probe.command", "linear-probe a teacher's features over timesteps, taps and inputs", False),
    ("finetune",): ("diffrep.tasks.finetune", "fine-tune a student (random or distilled backbone) on labelled data",
                    True),
    ("distill",): ("diffrep.repfusion.distill", "RepFusion: distil a teacher's features into a student", True),
    ("experiment", "repfusion"): ("diffrep.repfusion.experiment",
                                  "RepFusion vs random init: every variant x label fraction x seed, one table", False),
    ("pdae", "fit"): ("diffrep.pdae.fit", "PDAE: learn a semantic encoder and a gradient estimator on a frozen DPM",
                      True),
    ("pdae", "fit-diffae"): ("diffrep.pdae.baseline",
                             "the Diff-AE baseline: the same encoder with a z-conditioned UNet trained from scratch",
                             True),
    ("pdae", "reconstruct"): ("diffrep.pdae.reconstruct",
                              "autoencode test images through z (inferred and random x_T): SSIM, PSNR, MSE", False),
    ("pdae", "interpolate"): ("diffrep.pdae.interpolate", "decode between pairs of test images (slerp x_T, lerp z)",
                              False),
    ("pdae", "manipulate"): ("diffrep.pdae.manipulate",
                             "move z along a linear classifier's class direction and decode", False),
    ("pdae", "encode"): ("diffrep.pdae.encode", "z of a data set to safetensors / .npy, and a linear probe of z",
                         False),
    ("pdae", "gap"): ("diffrep.pdae.gap", "the posterior-mean gap per timestep, with and without the shift G",
                      False),
    ("pdae", "compare"): ("diffrep.pdae.compare",
                          "training time two runs' in-training evaluations need to reach the same random-x_T MSE",
                          False),
    ("quickstart",): ("diffrep.quickstart", "the main job on the shipped teacher: info, samples, a probe, a short "
                      "distillation and a short PDAE fit", False),
}
GROUPS = {"teacher": "inspect a pre-trained DPM", "dpm": "train and sample a DDPM of your own",
          "experiment": "the experiments behind the README's tables, resumable",
          "pdae": "PDAE: autoencode images through a frozen pre-trained DPM"}


class _Parser(argparse.ArgumentParser):
    """Lists a command's options (its DEFAULTS) in its help, importing the command only then."""

    defaults_module: str | None = None

    def format_help(self):
        if self.defaults_module and not self.epilog:
            defaults = importlib.import_module(self.defaults_module).DEFAULTS
            self.epilog = "options (override with --KEY VALUE; defaults shown):\n" + config_lib.describe(defaults)
        return super().format_help()


def _subcommands(parser):
    return parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)


def _add_configured(sub, word, module_name, help_text, resumable):
    parser = sub.add_parser(word, help=help_text, description=help_text,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.defaults_module = module_name
    parser.add_argument("--config", help="YAML file of options, applied over the defaults")
    parser.add_argument("--data", dest="data_name", metavar="NAME",
                        help="dataset, for commands that read one: fashion-mnist, digits, imagefolder:PATH, "
                             "cifar10:PATH")
    parser.add_argument("--teacher", dest="teacher_path", metavar="PATH",
                        help="diffusers UNet2DModel directory (default: the shipped teacher)")
    parser.add_argument("--out", dest="out_dir", metavar="DIR", help="output directory")
    if resumable:
        parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    parser.set_defaults(_module=module_name, _resumable=resumable)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="diffrep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"diffrep {__version__}")
    top = _subcommands(parser)
    groups = {name: _subcommands(top.add_parser(name, help=text, description=text)) for name, text in GROUPS.items()}

    info = groups["teacher"].add_parser("info", help="architecture summary and every tap with its output shape")
    info.add_argument("path", nargs="?", help="diffusers UNet2DModel directory (default: the shipped teacher)")
    info.add_argument("--depth", type=int, default=None,
                      help="only list taps with at most this many named parts "
                           "(1: blocks such as down_blocks.0; 2: down_blocks.0.resnets.1; default: all)")
    info.set_defaults(_handler="diffrep.teacher.info:main")

    for words, (module_name, help_text, resumable) in CONFIGURED.items():
        _add_configured(groups[words[0]] if len(words) > 1 else top, words[-1], module_name, help_text, resumable)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if hasattr(args, "_handler"):
            if extra:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            module_name, func = args._handler.split(":")
            return getattr(importlib.import_module(module_name), func)(args) or 0
        module = importlib.import_module(args._module)
        shortcuts = []
        for flag, value, key in (("--data", args.data_name, "data.name"), ("--teacher", args.teacher_path, "teacher"),
                                 ("--out", args.out_dir, "out")):
            if value is not None:
                if key.split(".")[0] not in module.DEFAULTS:
                    raise UserError(f"this command takes no {flag}")
                shortcuts += [f"--{key}", value]
        cfg = config_lib.resolve(module.DEFAULTS, args.config, shortcuts + extra)
        module.run(cfg, **({"resume": args.resume} if args._resumable else {}))
        return 0
    except UserError as err:
        print(f"diffrep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffrep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
