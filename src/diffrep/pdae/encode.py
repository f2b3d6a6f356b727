"""`diffrep pdae encode`: the semantic code z of every train and test image, and a linear probe of it.

    diffrep pdae encode --model runs/pdae/model --out runs/pdae-encode

z = E(x0) from the saved (EMA) encoder, for both splits. Saved as latents.safetensors (train_z, train_labels,
test_z, test_labels, and the train z's per-dimension mean and std, the statistics the reference normalises z
with) and as z_train.npy, z_test.npy, labels_train.npy, labels_test.npy. The probe is diffrep's linear probe
(standardised features, multinomial logistic regression by L-BFGS, train -> test accuracy), run on the trained
encoder's z and on the z of an untrained encoder of the same config (seeded): probe_accuracy and
untrained_probe_accuracy. Also z_pca.png (the test z on their first two principal components, by class),
metrics.json, report.md and config.yaml.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from diffrep import data as data_lib
from diffrep.options import pdae as options
from diffrep.pdae import app
from diffrep.pdae.encoder import SemanticEncoder
from diffrep.probe.linear import probe
from diffrep.report.plots import plt
from diffrep.run_dir import honour_umask
from diffrep.run_dir import write_metrics

DEFAULTS = options.ENCODE


def z_statistics(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of z (std 1 where z is constant), to normalise codes as the reference does."""
    std = z.std(0)
    return z.mean(0), torch.where(std > 1e-6, std, torch.ones_like(std))


def untrained_encoder(config: dict, seed: int) -> SemanticEncoder:
    """A randomly initialised encoder of the same config, from a fixed seed (the probe's baseline)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SemanticEncoder(**config).eval().requires_grad_(False)


def pca_plot(z: torch.Tensor, labels: torch.Tensor, classes: list[str], path: Path) -> Path:
    """The codes on their first two principal components, one colour per class."""
    centred = z - z.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    xy = (centred @ v[:2].T).numpy()
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    for c, name in enumerate(classes):
        keep = (labels == c).numpy()
        ax.scatter(xy[keep, 0], xy[keep, 1], s=4, alpha=0.6, label=name, color=f"C{c % 10}")
    ax.set(xlabel="PC 1", ylabel="PC 2", title="test z, first two principal components")
    ax.legend(fontsize=7, markerscale=3)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(cfg: dict) -> dict:
    start = time.perf_counter()
    cfg, loaded = app.load(cfg)
    app.positive_int(cfg["probe"]["max_iter"], "probe.max_iter")
    train, test = (data_lib.check_classes(data_lib.load(cfg["data"], split), split) for split in ("train", "test"))
    out = app.prepare_out(cfg)
    print(f"encoding {len(train)} train / {len(test)} test {cfg['data']['name']} images with {loaded.directory} "
          f"-> {out}")
    z = {split: app.encode_z(loaded.model.encoder, images, cfg["batch_size"], loaded.device)
         for split, images in (("train", train), ("test", test))}
    mean, std = z_statistics(z["train"])
    save_file({"train_z": z["train"], "train_labels": train.labels, "test_z": z["test"], "test_labels": test.labels,
               "mean": mean, "std": std}, out / "latents.safetensors")
    honour_umask(out / "latents.safetensors")
    for split, images in (("train", train), ("test", test)):
        np.save(out / f"z_{split}.npy", z[split].numpy())
        np.save(out / f"labels_{split}.npy", images.labels.numpy())
    options = {"weight_decay": cfg["probe"]["weight_decay"], "max_iter": cfg["probe"]["max_iter"],
               "num_classes": len(train.classes)}
    accuracy = probe(z["train"], train.labels, z["test"], test.labels, **options)
    untrained = untrained_encoder(loaded.model.encoder.config, cfg["seed"]).to(loaded.device)
    z_untrained = {split: app.encode_z(untrained, images, cfg["batch_size"], loaded.device)
                   for split, images in (("train", train), ("test", test))}
    untrained_accuracy = probe(z_untrained["train"], train.labels, z_untrained["test"], test.labels, **options)
    plot = pca_plot(z["test"], test.labels, test.classes, out / "z_pca.png")
    metrics = {"probe_accuracy": accuracy, "untrained_probe_accuracy": untrained_accuracy,
               "z_dim": z["train"].shape[1], "train_size": len(train), "test_size": len(test),
               "seconds": time.perf_counter() - start}
    lines = [f"z ({metrics['z_dim']} dims) of {len(train)} train and {len(test)} test images: latents.safetensors, "
             f"z_*.npy, labels_*.npy.", "",
             f"- linear probe, test accuracy: {accuracy:.4f}",
             f"- the same probe on an untrained encoder's z: {untrained_accuracy:.4f}"]
    report = app.write_report(out, "PDAE semantic codes", loaded, cfg, lines, [plot])
    print("\n".join(lines[2:]) + f"\nreport: {report}")
    return write_metrics(out, metrics)
