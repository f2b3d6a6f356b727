"""A model card (README.md) written beside every trained DPM: what it is, how well it trained, how to retrain it."""
from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from diffrep import config as config_lib


def command_line(cfg: dict) -> str:
    """The command that reproduces this run: the one that started it, without --resume."""
    if Path(sys.argv[0]).name in ("diffrep", "cli.py", "__main__.py") and "fit" in sys.argv:
        return "diffrep " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
    return f"diffrep dpm fit --config config.yaml  # the resolved config below, saved as {cfg['out']}/config.yaml"


def write_card(model_dir: Path, cfg: dict, metrics: dict, samples: Path, command: str) -> Path:
    shutil.copyfile(samples, model_dir / "samples.png")
    hours, rest = divmod(int(metrics["train_seconds"]), 3600)
    text = f"""# DDPM on {cfg['data']['name']} ({metrics['parameters'] / 1e6:.2f}M parameters)

A diffusers `UNet2DModel` trained with epsilon prediction by `diffrep dpm fit`; these are the EMA
weights (decay {cfg['optim']['ema_decay']}). Load it with plain diffusers,
`UNet2DModel.from_pretrained(this_folder)`, or as a diffrep teacher, `diffrep.teacher.load_teacher(this_folder)`.

| | |
|---|---|
| data | {cfg['data']['name']} train split, {cfg['data']['channels']} x {cfg['data']['resolution']} x {cfg['data']['resolution']}, in [-1, 1] |
| steps | {metrics['steps']} at batch {cfg['optim']['batch_size']} x {metrics['world_size']} device(s) ({metrics['steps'] * cfg['optim']['batch_size'] * metrics['world_size']:,} images seen) |
| wall time | {hours} h {rest // 60} min of training ({metrics['train_seconds']:.0f} s) |
| final loss | {metrics.get('final_loss', float('nan')):.4f} (mean epsilon MSE over the last 100 steps) |
| schedule | T = {cfg['schedule']['num_train_timesteps']}, {cfg['schedule']['beta_schedule']} betas {cfg['schedule']['beta_start']} .. {cfg['schedule']['beta_end']} |

Samples ({cfg['sample']['sampler'].upper()}, {cfg['sample']['steps']} steps, seed {cfg['seed']}):

![samples](samples.png)

## Retrain

```
{command}
```

## Config

```yaml
{config_lib.dump(cfg).strip()}
```
"""
    path = model_dir / "README.md"
    path.write_text(text)
    return path
