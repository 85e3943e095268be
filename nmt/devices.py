"""Which torch device a command runs on: one resolver for training and inference."""

from __future__ import annotations

import torch

from nmt.config_choices import Device
from nmt.errors import ConfigError

DEVICE_KINDS = Device.values()  # the config's choices (nmt/config_choices.py)


def resolve_device(name: str, key: str) -> torch.device:
    """``auto`` (CUDA when visible, else CPU), ``cpu`` or ``cuda``.

    Raises:
        ConfigError: an unknown name, or ``cuda`` without a visible GPU, naming ``key``
            (``train.device``, ``--device``).
    """
    if name not in DEVICE_KINDS:
        raise ConfigError(f"{key}={name!r} is unknown: use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}=cuda was asked for but no CUDA GPU is visible: use cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; from the host to a GPU through pinned memory and without
    blocking, so the copy queues behind the work already sent instead of waiting for it (a
    plain ``.to("cuda")`` of pageable memory synchronizes the stream). A CPU tensor asked
    for on the CPU is returned as it is."""
    if tensor.device.type != "cpu" or device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
