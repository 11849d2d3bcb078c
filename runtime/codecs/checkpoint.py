"""train-codec's checkpoint: the parts' tensors and Adam's state every few steps, in
DIR/.train-checkpoint (safetensors + JSON, renamed into place, the JSON last), so that a
rerun of the same training resumes where a killed one stopped. `parts` is the training's
module of part tensors (`flat()`, `named_parameters()`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from latentray.channels.errors import CodecError

CHECKPOINT = ".train-checkpoint"


def write_checkpoint(directory: Path, parts, opt, step: int, losses: list, key: dict,
                      held_before: list) -> None:
    ck = directory / CHECKPOINT
    ck.mkdir(parents=True, exist_ok=True)
    tensors = {f"param/{k}": v.detach().contiguous() for k, v in parts.flat().items()}
    for name, p in parts.named_parameters():
        st = opt.state.get(p)
        if st:
            tensors[f"adam/{name}/exp_avg"] = st["exp_avg"].contiguous()
            tensors[f"adam/{name}/exp_avg_sq"] = st["exp_avg_sq"].contiguous()
            tensors[f"adam/{name}/step"] = torch.as_tensor(st["step"], dtype=torch.float64).reshape(1)
    # The tensors go to a file of their own step, named by the JSON written after them: a
    # kill at any point leaves the JSON naming a complete file of one step.
    name = f"step-{step:07d}.safetensors"
    save_file(tensors, str(ck / f".{name}.tmp"))
    os.replace(ck / f".{name}.tmp", ck / name)
    (ck / ".state.json.tmp").write_text(json.dumps({"step": step, "tensors": name, "losses": losses, "key": key,
                                                    "held_before": held_before}))
    os.replace(ck / ".state.json.tmp", ck / "state.json")
    for old in ck.glob("step-*.safetensors"):
        if old.name != name:
            old.unlink()


def read_checkpoint(directory: Path, parts, opt, key: dict, log) -> tuple:
    """(step, losses, held-out [answer, token, drill] losses before training) resumed from DIR's checkpoint, or
    (0, [], None) when there is none."""
    ck = directory / CHECKPOINT
    if not (ck / "state.json").is_file():
        return 0, [], None
    state = json.loads((ck / "state.json").read_text())
    if state.get("key") != key:
        raise CodecError(f"{ck} holds a training of other settings (spec edges, codec options, seed, data, batch, "
                         "lr or steps); rerun with those, or pass --restart to discard it")
    tensors = load_file(str(ck / state["tensors"]))
    with torch.no_grad():
        for k, v in parts.flat().items():
            v.copy_(tensors[f"param/{k}"])
    for name, p in parts.named_parameters():
        if f"adam/{name}/exp_avg" in tensors:
            opt.state[p] = {"step": tensors[f"adam/{name}/step"][0].float(),
                            "exp_avg": tensors[f"adam/{name}/exp_avg"].clone(),
                            "exp_avg_sq": tensors[f"adam/{name}/exp_avg_sq"].clone()}
    log(f"  resuming from the checkpoint of step {state['step']} in {ck}")
    return int(state["step"]), list(state["losses"]), state["held_before"]
