"""`diffrep pdae manipulate`: move z along a class direction and decode from the image's own x_T (reference 4.4).

    diffrep pdae manipulate --model runs/pdae/model --target 1 --out runs/pdae-manipulate

Diff-AE's recipe, as the reference: z of the train images is normalised per dimension, z_n = (z - mu) / sigma,
and a linear classifier (multinomial logistic regression, diffrep's probe; the reference trains a linear layer
with BCE on 40 attributes) is fitted on z_n with the class labels. For test images not of the target class c:
x_T = DDIM-encode(x0) with their own z, then for each scale s
    z_n' = z_n + s sqrt(z_dim) w_c / ||w_c||,   z' = z_n' sigma + mu,   decode x_T with z'.
manipulate.png has one row per image: the original, then one column per scale. To show in numbers that the
edit works, each decoded image is encoded again and the classifier's mean probability of class c is reported
per scale (p_target_<s>; p_target_original for the unedited images). classifier_test_accuracy is the
classifier's accuracy on the test split.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from diffrep import data as data_lib
from diffrep.dpm.sample import save_grid
from diffrep.errors import UserError
from diffrep.options import pdae as options
from diffrep.pdae import app, ddim
from diffrep.pdae.encode import z_statistics
from diffrep.probe.linear import fit_logistic
from diffrep.run_dir import write_metrics

DEFAULTS = options.MANIPULATE


def target_class(target, classes: list[str]) -> int:
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(classes):
        return target
    if isinstance(target, str) and target in classes:
        return classes.index(target)
    raise UserError(f"target must be a class index 0..{len(classes) - 1} or a name ({', '.join(classes)}), "
                    f"got {target!r}")


def scale_list(scales) -> list[float]:
    scales = [scales] if isinstance(scales, (int, float)) and not isinstance(scales, bool) else scales
    if not isinstance(scales, list) or not scales or \
            not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scales):
        raise UserError(f"scales must be a number or a list of numbers, got {scales!r}")
    return [float(s) for s in scales]


def run(cfg: dict) -> dict:
    start = time.perf_counter()
    scales = scale_list(cfg["scales"])
    for key in ("images", "encode_steps", "decode_steps"):
        app.positive_int(cfg[key], key)
    cfg, loaded = app.load(cfg)
    train, test = (data_lib.check_classes(data_lib.load(cfg["data"], split), split) for split in ("train", "test"))
    c = target_class(cfg["target"], train.classes)
    others = (test.labels != c).nonzero().flatten()
    if len(others) == 0:
        raise UserError(f"every test image is of the target class {train.classes[c]}")
    pick = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(cfg["seed"]))[:cfg["images"]]]
    out = app.prepare_out(cfg)
    model, teacher, device, progress = loaded.model, loaded.teacher, loaded.device, cfg["progress_bar"]
    print(f"manipulating {len(pick)} {cfg['data']['name']} test images towards '{train.classes[c]}' with "
          f"{loaded.kind} {loaded.directory}, scales {scales} -> {out}")

    z_train = app.encode_z(model.encoder, train, cfg["batch_size"], device)
    mean, std = z_statistics(z_train)
    weight, bias = fit_logistic((z_train - mean) / std, train.labels, len(train.classes),
                                cfg["probe"]["weight_decay"], cfg["probe"]["max_iter"])
    z_test = (app.encode_z(model.encoder, test, cfg["batch_size"], device) - mean) / std
    accuracy = float((F.linear(z_test, weight, bias).argmax(1) == test.labels).float().mean())
    direction = weight[c] / weight[c].norm() * math.sqrt(z_train.shape[1])

    def p_target(images: torch.Tensor) -> torch.Tensor:
        z_n = (app.encode_z(model.encoder, images, cfg["batch_size"], device) - mean) / std
        return F.linear(z_n, weight, bias).softmax(1)[:, c]

    abar = teacher.alphas_cumprod
    columns = [test.floats(pick)]
    probabilities = {"original": p_target(columns[0])}
    with torch.no_grad():
        z = model.encoder(columns[0].to(device)).cpu()
    x_T = ddim.encode(ddim.eps_function(model, teacher, z.to(device)), abar, columns[0].to(device),
                      cfg["encode_steps"], progress)
    for s in scales:
        z_edit = ((z - mean) / std + s * direction) * std + mean
        decoded = ddim.decode(ddim.eps_function(model, teacher, z_edit.to(device)), abar, x_T, cfg["decode_steps"],
                              progress).cpu()
        columns.append(decoded)
        probabilities[f"{s:g}"] = p_target(decoded.clamp(-1, 1))
    grid = save_grid(torch.stack(columns, 1).flatten(0, 1), out / "manipulate.png", nrow=len(columns))
    metrics = {f"p_target_{key}": float(p.mean()) for key, p in probabilities.items()}
    metrics |= {"classifier_test_accuracy": accuracy, "target_class": c, "images": len(pick),
                "seconds": time.perf_counter() - start}
    lines = [f"Target class {c} ({train.classes[c]}); {len(pick)} test images of other classes; x_T by "
             f"{cfg['encode_steps']} DDIM inversion steps, decoded in {cfg['decode_steps']}. The linear classifier "
             f"on normalised z has test accuracy {accuracy:.4f}.", "",
             "| scale s | mean p(target) of the re-encoded image |", "|---|---|",
             f"| original | {metrics['p_target_original']:.3f} |"]
    lines += [f"| {s:g} | {metrics[f'p_target_{s:g}']:.3f} |" for s in scales]
    lines += ["", f"Columns of {grid.name}: original, then s = {', '.join(f'{s:g}' for s in scales)}."]
    report = app.write_report(out, "PDAE class manipulation", loaded, cfg, lines, [grid])
    print("\n".join(lines[2:-2]) + f"\nreport: {report}")
    return write_metrics(out, metrics)
