"""The text conditioning a latent UNet gets when diffrep reads its features: an explicit choice, never a prompt.

"empty-prompt": the text encoder's embedding of "" (what classifier-free guidance uses as 'unconditional');
"zeros": an all-zero context; PATH: a saved (1, L, D) embedding (safetensors or .pt).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from diffrep.errors import UserError

CHOICES = ("empty-prompt", "zeros")
ZERO_TOKENS = 77  # CLIP's context length


def has_text_encoder(root: Path) -> bool:
    return (root / "text_encoder").is_dir() and (root / "tokenizer").is_dir()


@contextmanager
def _quiet_transformers():
    """transformers draws a progress bar and logs notices while it loads a model; neither helps here."""
    from transformers.utils import logging as hf_logging

    bar, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def empty_prompt(root: Path) -> torch.Tensor:
    """The text encoder's last hidden state for "", padded to the tokenizer's length (as the pipelines encode it)."""
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError:
        raise UserError("the empty-prompt conditioning needs the transformers package (pip install transformers); "
                        "or pass conditioning 'zeros' or an embedding file") from None
    try:
        with _quiet_transformers():
            tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
            encoder = CLIPTextModel.from_pretrained(root / "text_encoder", local_files_only=True).eval()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load the text encoder in {root}: {first}") from None
    ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids)[0].float()


def read_embedding(path: Path) -> torch.Tensor:
    """The one tensor in a safetensors or .pt file, as (1, L, D)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a readable embedding file: {first}") from None
    if isinstance(data, dict):
        tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
        if len(tensors) != 1:
            raise UserError(f"{path}: expected one tensor, found {len(tensors)} ({', '.join(map(str, data))})")
        data = tensors[0]
    if not isinstance(data, torch.Tensor):
        raise UserError(f"{path}: expected a tensor of shape (1, L, D), got {type(data).__name__}")
    if data.dim() == 2:
        data = data[None]
    if data.dim() != 3 or len(data) != 1:
        raise UserError(f"{path}: expected a tensor of shape (1, L, D), got {tuple(data.shape)}")
    return data.float()


def text_conditioning(root: Path, choice, width: int) -> tuple[torch.Tensor, str]:
    """(the (1, L, width) context, how it was made). None: the empty prompt when the pipeline has a text encoder,
    zeros otherwise."""
    if choice is None:
        choice = "empty-prompt" if has_text_encoder(root) else "zeros"
    choice = str(choice)
    if choice == "zeros":
        context, how = torch.zeros(1, ZERO_TOKENS, width), "zeros"
    elif choice == "empty-prompt":
        if not has_text_encoder(root):
            raise UserError(f"{root}: the empty-prompt conditioning needs text_encoder/ and tokenizer/ in the "
                            f"pipeline folder; pass conditioning 'zeros' or an embedding file")
        context, how = empty_prompt(root), "empty-prompt"
    elif Path(choice).is_file():
        context, how = read_embedding(Path(choice)), f"embedding {choice}"
    else:
        raise UserError(f"conditioning must be {' or '.join(CHOICES)} or an embedding file (.safetensors / .pt "
                        f"of shape (1, L, D)); '{choice}' is none of these")
    if context.shape[-1] != width:
        raise UserError(f"the {how} conditioning has width {context.shape[-1]} but the UNet's cross-attention "
                        f"takes {width}")
    return context, how
