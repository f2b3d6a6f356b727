"""Copy a safetensors file with its weight matrices and kernels (floating tensors of 2 or more dimensions) in float16;
biases, norm parameters, running statistics, integer tensors and the metadata stay as they are.

    python docs/results/companions/to_float16.py SRC.safetensors DST.safetensors

diffrep loads such a file into its float32 models unchanged (load_state_dict casts), so a shipped model takes half
the space; the README beside the shipped models gives the accuracy with both precisions.
"""
import sys

from safetensors import safe_open
from safetensors.torch import save_file

from diffrep.run_dir import honour_umask


def main(src: str, dst: str) -> None:
    with safe_open(src, framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        metadata = fh.metadata()
    half = {k: v.half() if v.is_floating_point() and v.dim() >= 2 else v for k, v in tensors.items()}
    save_file(half, dst, metadata=metadata)
    honour_umask(dst)  # safetensors writes 0600


if __name__ == "__main__":
    main(*sys.argv[1:3])
