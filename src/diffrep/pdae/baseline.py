"""`diffrep pdae fit-diffae`: the Diff-AE-style baseline the paper compares PDAE with.

The same semantic encoder, and a full UNet of the teacher's architecture (its config only, none of its
weights) trained from scratch with the plain eps loss: every residual block, down, mid and up, is
z-conditioned the Diff-AE way, h = (GN(h) (1 + scale_t) + shift_t) (1 + scale_z), and the output conv starts at
zero as in Diff-AE's ADM UNet. Same data, optimizer, EMA, steps and outputs as `diffrep pdae fit`, so the two
runs compare training cost and quality on one machine. OUT/model/ loads with `diffrep.pdae.load_autoencoder`.
"""
from __future__ import annotations

import lightning as L
import torch
from diffusers import UNet2DModel
from torch import nn

from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.options import pdae as options
from diffrep.pdae import fit as pdae_fit
from diffrep.pdae.encoder import SemanticEncoder
from diffrep.pdae.module import PDAEModule
from diffrep.pdae.precision import use_precision
from diffrep.pdae.unet_parts import check_config, run_down, run_up, time_embedding, time_embedding_dim
from diffrep.pdae.zblock import z_condition
from diffrep.teacher import teacher_from_config

DEFAULTS = options.FIT_DIFFAE


class DiffAEUNet(nn.Module):
    """eps(x_t, t, z): a UNet2DModel of the given config with every resnet z-conditioned (scale only)."""

    def __init__(self, unet_config: dict, z_dim: int):
        super().__init__()
        unet_config = check_config(unet_config)
        self.config = {"unet_config": unet_config, "z_dim": z_dim}
        emb = time_embedding_dim(unet_config)
        self.unet = z_condition(UNet2DModel(**unet_config), emb, z_shift=False)
        self.z_embedding = nn.Linear(z_dim, emb)
        nn.init.zeros_(self.unet.conv_out.weight)
        nn.init.zeros_(self.unet.conv_out.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        temb = torch.cat([time_embedding(self.unet, t), self.z_embedding(z)], dim=1)  # split by each ZResnetBlock2D
        h, skips = run_down(self.unet, x_t, temb)
        return run_up(self.unet, h, skips, temb)


class DiffAE(nn.Module):
    kind = "diffae"

    def __init__(self, encoder: SemanticEncoder, unet: DiffAEUNet):
        super().__init__()
        self.encoder, self.unet = encoder, unet

    @property
    def config(self) -> dict:
        return {"kind": self.kind, "encoder": self.encoder.config, "unet": self.unet.config}

    @classmethod
    def from_config(cls, config: dict) -> "DiffAE":
        return cls(SemanticEncoder(**config["encoder"]), DiffAEUNet(**config["unet"]))


class DiffAEModule(PDAEModule):
    """The PDAE training step with the whole eps predicted by the z-conditioned UNet; weights are all 1."""

    def predict_eps(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model.unet(x_t, t, self.model.encoder(x0))


def run(cfg: dict, resume: bool = False) -> dict:
    teacher = use_precision(teacher_from_config(cfg["teacher"]), cfg["schedule_precision"])  # config and schedule
    if teacher.family != "unet2d":  # DiffAEUNet is a z-conditioned UNet2DModel
        raise UserError(f"the Diff-AE baseline supports diffusers UNet2DModel teachers only; {teacher.path} is a "
                        f"{teacher.family} teacher")
    cfg = pdae_fit.resolve(cfg, teacher)
    train = data_lib.load(cfg["data"], "train")
    L.seed_everything(cfg["seed"], verbose=False)
    model = DiffAE(pdae_fit.build_encoder(cfg), DiffAEUNet(teacher.unet.config, cfg["z_dim"]))
    module = DiffAEModule(teacher, model, torch.ones(teacher.num_timesteps), cfg["optim"], train, cfg["seed"],
                          cfg["data"]["hflip"])
    return pdae_fit.train_and_save(cfg, resume, module, train, f"a Diff-AE baseline with {teacher.path}'s architecture")
