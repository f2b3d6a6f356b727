"""PDAE applications: DDIM encode / decode, the gap, the in-training evaluation and every sub-command end to end."""
import csv
import json
import time

import pytest
import torch
from diffusers import UNet2DModel

from conftest import TINY_UNET
from diffrep import cli
from diffrep.pdae import GradientEstimator, SemanticEncoder, baseline, compare, ddim, fit
from diffrep.pdae.autoencoder import PDAE
from diffrep.pdae.evaluation import read_rows
from diffrep.pdae.gap import posterior_gaps, timestep_grid
from diffrep.pdae.interpolate import slerp
from diffrep.pdae.quality import image_metrics
from diffrep.teacher import load_teacher
from diffrep.teacher.schedule import ddpm_scheduler
from diffrep.train import TimedModule
from test_pdae import tiny_cfg

TINY_EVAL = {"eval.every_n_steps": 1, "eval.images": 8, "eval.steps": 2, "eval.probe_every_n_steps": 2,
             "eval.probe_train_size": 60, "eval.probe_test_size": 30}
TINY_APP = ["--data.test_size", "20", "--progress_bar", "false"]


def gaussian_eps(alphas_cumprod: torch.Tensor, s: float):
    """The exact E[eps | x_t] when x0 ~ N(0, s^2 I): the DDIM ODE of this eps maps N(0, I) to N(0, s^2 I)."""
    def eps(x, t):
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * x / (a * s ** 2 + 1 - a)
    return eps


def test_respacing_is_the_references():
    assert ddim.respaced(1000, 100)[:4] == [0, 9, 19, 29] and len(ddim.respaced(1000, 100)) == 101
    assert ddim.respaced(1000, 100)[-1] == 999
    assert len(ddim.respaced(1000, 1000)) == 1000  # "ddim1000 gives 999 steps"
    assert ddim.respaced(10, 50) == list(range(10))


def test_ddim_inverts_and_transports_noise_to_data_with_the_exact_denoiser():
    abar = ddpm_scheduler().alphas_cumprod.double()
    eps = gaussian_eps(abar, 0.3)
    gen = torch.Generator().manual_seed(0)
    x0 = (0.3 * torch.randn(4, 1, 8, 8, generator=gen, dtype=torch.float64)).clamp(-0.9, 0.9)
    errors = {n: float((ddim.decode(eps, abar, ddim.encode(eps, abar, x0, n), n) - x0).abs().mean() / x0.abs().mean())
              for n in (50, 200, 999)}
    assert errors[999] < 0.01 and errors[200] < errors[50] / 3, errors  # first order: the error shrinks as 1 / N
    samples = ddim.decode(eps, abar, torch.randn(64, 1, 8, 8, generator=gen, dtype=torch.float64), 999)
    assert float(samples.std()) == pytest.approx(0.3, rel=0.03)  # N(0, I) -> N(0, 0.3^2)


def test_eps_functions_of_the_teacher_a_fresh_pdae_and_a_diffae(tiny_teacher_dir):
    teacher = load_teacher(tiny_teacher_dir)
    x, t, z = torch.randn(2, 1, 16, 16), torch.tensor([3, 700]), torch.randn(2, 8)
    with torch.no_grad():
        expected = teacher.unet(x, t).sample
        pdae = PDAE(SemanticEncoder(1, 16, 8, [16, 32]), GradientEstimator(teacher.unet.config, 8))
        assert torch.equal(ddim.eps_function(None, teacher)(x, t), expected)
        assert torch.equal(ddim.eps_function(pdae, teacher, z)(x, t), expected)  # G = 0 at init
        torch.nn.init.constant_(pdae.estimator.conv_out.bias, 1.0)
        coef = -(1 - teacher.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)  # the DDIM shift
        torch.testing.assert_close(ddim.eps_function(pdae, teacher, z)(x, t), expected + coef)
        diffae = baseline.DiffAE(SemanticEncoder(1, 16, 8, [16, 32]), baseline.DiffAEUNet(teacher.unet.config, 8))
        assert torch.equal(ddim.eps_function(diffae, teacher, z)(x, t), diffae.unet(x, t, z))


def test_the_gap_is_the_same_with_and_without_a_zero_g(tiny_teacher_dir):
    teacher = load_teacher(tiny_teacher_dir)
    estimator = GradientEstimator(teacher.unet.config, 8)
    x0, z, ts = torch.rand(6, 1, 16, 16) * 2 - 1, torch.randn(6, 8), [0, 100, 999]
    g = posterior_gaps(teacher, estimator, x0, z, ts, seed=0, batch_size=4)
    dpm, pdae = g["gap_dpm"], g["gap_pdae"]
    assert dpm == pdae and g["x0_dpm"] == g["x0_pdae"] and all(v > 0 for v in dpm)
    assert dpm == pytest.approx(posterior_gaps(teacher, estimator, x0, z, ts, seed=0, batch_size=6)["gap_dpm"])
    abar = teacher.alphas_cumprod.double()  # the gap is c_t^2 times the x0_hat MSE (mu~ is linear in x0)
    c = torch.tensor([(1 - abar[t] / (abar[t - 1] if t else 1.0)) * (abar[t - 1] if t else 1.0) ** 0.5 / (1 - abar[t])
                      for t in ts])
    assert dpm == pytest.approx([float(c_t ** 2 * m) for c_t, m in zip(c, g["x0_dpm"])], rel=1e-4)
    torch.nn.init.constant_(estimator.conv_out.bias, 0.1)
    shifted = posterior_gaps(teacher, estimator, x0, z, ts, seed=0, batch_size=6)
    dpm_g, pdae_g = shifted["gap_dpm"], shifted["gap_pdae"]
    assert dpm_g == pytest.approx(dpm) and pdae_g[0] == pytest.approx(dpm[0])  # no shift at t = 0
    assert all(abs(p / d - 1) > 1e-3 for p, d in zip(pdae_g[1:], dpm[1:]))
    assert timestep_grid(5, 1000) == [0, 249, 499, 749, 999] and timestep_grid("10,0", 1000) == [0, 10]


def test_slerp_and_image_metrics():
    a, b = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    a[:, 0, 0, 0], b[:, 0, 0, 1] = 2.0, 2.0
    mid = slerp(a, b, torch.tensor([0.5, 0.0]))
    assert float(mid[0].norm()) == pytest.approx(2.0) and torch.equal(mid[1], a[1])  # stays on the sphere
    assert torch.allclose(slerp(a, a, torch.tensor([0.3, 0.7])), a)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    same = image_metrics(x, x)
    assert torch.allclose(same["ssim"], torch.ones(3)) and not same["mse"].any()
    noisy = image_metrics((x + 0.2).clamp(-1, 1), x)
    assert noisy["ssim"].shape == (3,) and (noisy["mse"] > 0).all() and (noisy["psnr"] < 100).all()


def test_untimed_work_is_left_out_of_train_seconds():
    module = TimedModule()
    module.on_train_start()
    with module.untimed():
        time.sleep(0.3)
    module.on_train_end()
    assert module.train_seconds < 0.1


@pytest.fixture(scope="module")
def models(tiny_teacher_dir, tmp_path_factory):
    """A tiny PDAE (trained 2 steps, eval every step) and Diff-AE (1 step) on digits."""
    root = tmp_path_factory.mktemp("models")
    fit.run(tiny_cfg(fit, tiny_teacher_dir, root / "pdae", **{"trainer.max_steps": 2, **TINY_EVAL}))
    baseline.run(tiny_cfg(baseline, tiny_teacher_dir, root / "diffae", **{"trainer.max_steps": 1}))
    return root


def test_fit_records_the_in_training_evaluation_and_resumes_it(models, tiny_teacher_dir):
    rows = read_rows(models / "pdae" / "eval.csv")
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[0]["train_seconds"] == 0
    assert rows[1]["train_seconds"] <= rows[2]["train_seconds"]
    metrics = json.loads((models / "pdae" / "metrics.json").read_text())
    assert metrics["eval_random_xT_mse"] == pytest.approx(rows[-1]["random_xT_mse"], rel=1e-5)
    assert json.loads((models / "pdae" / "model" / "config.json").read_text())["data"]["name"] == "digits"
    with (models / "pdae" / "eval.csv").open("a") as fh:
        fh.write("3,99.0,0.5\n")  # a row written after the last checkpoint, then the run was killed
    fit.run(tiny_cfg(fit, tiny_teacher_dir, models / "pdae", **{"trainer.max_steps": 4, **TINY_EVAL}), resume=True)
    rows = read_rows(models / "pdae" / "eval.csv")
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4] and rows[3]["train_seconds"] < 99
    # the z probe every 2 steps: the EMA encoder against one untrained encoder, computed once
    probes = list(csv.DictReader((models / "pdae" / "z_probe.csv").open()))
    assert [int(r["step"]) for r in probes] == [0, 2, 4] and len({r["untrained_z_probe"] for r in probes}) == 1
    assert all(0 < float(r["z_probe"]) <= 1 for r in probes) and (models / "pdae" / "z_probe.png").is_file()
    metrics = json.loads((models / "pdae" / "metrics.json").read_text())
    assert metrics["eval_z_probe"] == float(probes[-1]["z_probe"])
    # resumed with no step left to train (to save a model that a killed run had not saved): the metrics stay
    fit.run(tiny_cfg(fit, tiny_teacher_dir, models / "pdae", **{"trainer.max_steps": 4, **TINY_EVAL}), resume=True)
    again = json.loads((models / "pdae" / "metrics.json").read_text())
    assert {k: v for k, v in again.items() if k != "train_seconds"} == {
        k: v for k, v in metrics.items() if k != "train_seconds"}  # train_seconds: the checkpoint's


def test_a_warm_start_goes_on_along_the_chain_s_steps(models, tiny_teacher_dir, tmp_path):
    init = models / "pdae" / "model"
    steps = json.loads((init / "config.json").read_text())["steps"]
    fit.run(tiny_cfg(fit, tiny_teacher_dir, tmp_path / "more", init=init, **{"trainer.max_steps": 2, **TINY_EVAL}))
    assert [r["step"] for r in read_rows(tmp_path / "more" / "eval.csv")] == [steps, steps + 1, steps + 2]
    probes = list(csv.DictReader((tmp_path / "more" / "z_probe.csv").open()))
    assert [int(r["step"]) for r in probes] == [steps, steps + 2]


def test_compare_finds_the_time_to_the_same_mse(tmp_path):
    for name, rows in (("pdae", [(0, 0, 0.4), (10, 5.0, 0.2), (20, 10.0, 0.1)]),
                       ("diffae", [(0, 0, 0.5), (10, 4.0, 0.3), (20, 8.0, 0.2)])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.csv").write_text("step,train_seconds,random_xT_mse\n"
                                                  + "".join(f"{s},{t},{m}\n" for s, t, m in rows))
    metrics = compare.run({"runs": [str(tmp_path / "pdae"), str(tmp_path / "diffae")], "target_mse": None,
                           "out": str(tmp_path / "cmp")})
    assert metrics["target_mse"] == 0.2  # the worse final MSE
    assert metrics["pdae_seconds_to_target"] == 5.0 and metrics["diffae_seconds_to_target"] == 8.0
    assert metrics["pdae_steps_to_target"] == 10 and metrics["seconds_ratio"] == pytest.approx(1.6)
    assert (tmp_path / "cmp" / "compare.png").is_file()


COMMANDS = {
    "reconstruct": (["--encode_steps", "3", "--decode_steps", "[2,3]", "--random_steps", "2", "--grid_images", "4"],
                    ["reconstruct.png"],
                    ["inferred_ssim_2", "inferred_psnr_3", "inferred_mse_3", "random_xT_mse", "unconditional_mse",
                     "random_xT_over_unconditional"]),
    "interpolate": (["--pairs", "2", "--frames", "3", "--encode_steps", "2", "--decode_steps", "2"],
                    ["interpolate.png"], ["endpoint_mse", "step_mse"]),
    "manipulate": (["--data.train_size", "100", "--images", "3", "--scales", "[-0.5,1]", "--encode_steps", "2",
                    "--decode_steps", "2"], ["manipulate.png"],
                   ["p_target_original", "p_target_-0.5", "p_target_1", "classifier_test_accuracy"]),
    "encode": (["--data.train_size", "100"], ["z_pca.png", "latents.safetensors", "z_train.npy", "z_test.npy"],
               ["probe_accuracy", "untrained_probe_accuracy"]),
    "gap": (["--timesteps", "4"], ["gap.png", "gap.csv"], ["gap_mean_dpm", "gap_mean_pdae", "gap_ratio",
                                                          "halved_min_t", "halved_max_t"]),
}


@pytest.mark.parametrize("kind", ["pdae", "diffae"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_application_writes_its_pictures_and_numbers(models, tmp_path, capsys, command, kind):
    options, files, keys = COMMANDS[command]
    out = tmp_path / command
    code = cli.main(["pdae", command, "--model", str(models / kind), *TINY_APP, *options, "--out", str(out)])
    if kind == "diffae" and command == "gap":  # a Diff-AE has no frozen DPM to shift
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "gap needs a PDAE model" in err, err
        return
    assert code == 0
    assert all((out / name).is_file() for name in [*files, "report.md", "metrics.json", "config.yaml"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(keys) <= set(metrics), sorted(metrics)
    assert "data: digits" in (out / "report.md").read_text()  # the data set the model was trained on


@pytest.mark.parametrize("args, message", [
    (["--model", "{tmp}/nothing"], "model not found: "),
    (["--model", "{tmp}"], "is not a saved autoencoder"),
    (["--decode_steps", "[2,0]"], "--decode_steps must be a list of integers each >= 1, got [2, 0]"),
    (["--teacher", "{other}"], "encodes 1 x 16 px images but the teacher"),
])
def test_bad_application_options_are_one_line_errors(models, tmp_path, capsys, args, message):
    other = tmp_path / "teacher32"
    UNet2DModel(**{**TINY_UNET, "sample_size": 32}).save_pretrained(other, safe_serialization=True)
    args = [a.format(tmp=tmp_path, other=other) for a in args]
    code = cli.main(["pdae", "reconstruct", "--model", str(models / "pdae"), *TINY_APP, *args,
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_model_needs_its_own_teacher_architecture(models, tmp_path, capsys):
    UNet2DModel(**{**TINY_UNET, "block_out_channels": (16, 16, 32, 64)}).save_pretrained(
        tmp_path / "wide", safe_serialization=True)
    code = cli.main(["pdae", "gap", "--model", str(models / "pdae"), "--teacher", str(tmp_path / "wide"), *TINY_APP,
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "trained on a teacher of another architecture" in err, err
