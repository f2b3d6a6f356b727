"""Keeps the policy's weights of each checkpoint that the seed-1 distillations in RUNS write (they keep only the
last) as RUNS/snapshots/RUN/step-N.pt, until both have finished. Run beside the experiment, on little CPU:

    OMP_NUM_THREADS=1 nice python snapshot_policy.py /var/tmp/diffrep-runs/policy-distill-seed1
"""
import sys
import time
from pathlib import Path

import torch

root = Path(sys.argv[1])
seen = {}
while True:
    done = 0
    for ckpt in root.glob("distill/*/labels0.01-seed1/checkpoints/last.ckpt"):
        run = ckpt.parents[2].name
        if (ckpt.parents[1] / "metrics.json").exists():
            done += 1
        m = ckpt.stat().st_mtime
        if seen.get(run) == m:
            continue
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
        except Exception as e:  # being written at this moment: try again next round
            print("skip", run, e, flush=True)
            continue
        seen[run] = m
        policy = {k: v for k, v in state["state_dict"].items() if k.startswith("policy.")}
        out = root / "snapshots" / run
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"step": state["global_step"], "policy": policy}, out / f"step-{state['global_step']:05d}.pt")
        print(run, state["global_step"], len(policy), flush=True)
    if done == 2:
        break
    time.sleep(30)
