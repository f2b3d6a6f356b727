"""LP-FT: the head starts as a linear probe of the frozen student (diffrep finetune --head_init probe)."""
import json

import torch

from conftest import run_cli
from diffrep import data as data_lib
from diffrep.probe.linear import probe
from diffrep.tasks import build_student
from diffrep.tasks.classify import ClassifierModule
from diffrep.tasks.finetune import DEFAULTS
from diffrep.tasks.probe_head import head_inputs
from diffrep.tasks.students import head_of
from test_tasks import TINY_FINETUNE


def _digits(n: int, offset: int = 0) -> data_lib.ImageSet:
    cfg = {**data_lib.DATA_DEFAULTS, "name": "digits", "resolution": 16}
    return data_lib.load(cfg, "train").subset(torch.arange(offset, offset + n))


def test_the_fitted_head_is_the_probe_and_the_ema_copy_follows():
    torch.manual_seed(0)
    train, test = _digits(120), _digits(60, offset=200)
    module = ClassifierModule(build_student("resnet18", 1, "small"), "resnet18", 10,
                              {**DEFAULTS["optim"], "name": "sgd", "ema_decay": 0.9}, train, seed=0, hflip=False)
    # stale running statistics, as in an EMA-distilled student: the fit re-estimates them first
    for bn in module.net.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_var.mul_(50.0)
    train_accuracy = module.init_head_from_probe()
    assert train_accuracy == 1.0
    head = head_of(module.net, "resnet18")
    x_train, x_test = head_inputs(module.net, head, train), head_inputs(module.net, head, test)
    # the classifier now predicts what the project's probe does on the same frozen features
    assert abs(module.test_accuracy(test) - probe(x_train, train.labels, x_test, test.labels, num_classes=10)) < 0.02
    for ours, ema in zip(module.net.state_dict().values(), module.ema.module.state_dict().values()):
        assert torch.equal(ours, ema)
    # train mode (batch statistics) gives the head what it was fitted on: a small loss, not a blow-up
    module.net.train()
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(module.net(data_lib.to_float(train.images[:32])), train.labels[:32])
    assert loss < 0.5


def test_finetune_with_a_probe_head_reports_the_probe(tmp_path):
    out = tmp_path / "ft"
    proc = run_cli("finetune", *TINY_FINETUNE, "--head_init", "probe", "--trainer.max_steps", "3", "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["probe_train_accuracy"] == 1.0 and 0.1 < metrics["probe_test_accuracy"] <= 1
    assert "the probe head alone" in proc.stdout
    bad = run_cli("finetune", "--task", "segment", "--head_init", "probe", "--out", str(tmp_path / "seg"), check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "diffrep: error: head_init probe is for --task classify; segment trains an FPN decoder"
    assert not (tmp_path / "seg").exists()
