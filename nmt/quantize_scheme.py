"""The ``--quantize`` schemes and the device they decode on, without torch.

The CLIs build their parsers (``--help``, a bad flag) before they load a model; these
checks live apart from :mod:`nmt.models.quantize`, which imports torch, so that
``nmt-serve --help`` and the others stay quick. The model is quantized where it is loaded
(:func:`nmt.inference.load_translation_model`).
"""

from __future__ import annotations

from nmt.errors import ConfigError

SCHEMES = ("int8",)


def check_scheme(scheme: str) -> None:
    """Raises: ConfigError for a scheme other than :data:`SCHEMES`."""
    if scheme not in SCHEMES:
        raise ConfigError(f"--quantize {scheme!r} is unknown: use {', '.join(SCHEMES)}")


def quantize_device(scheme: str | None, device: str) -> str:
    """The ``--device`` to load a model on: int8 kernels are CPU kernels, so with a
    ``scheme``, ``auto`` means ``cpu``.

    Raises:
        ConfigError: an unknown scheme, or a scheme with ``--device cuda``.
    """
    if not scheme:
        return device
    check_scheme(scheme)
    if device == "cuda":
        raise ConfigError(
            f"--quantize {scheme} runs on the CPU only (torch's int8 kernels are CPU kernels): "
            "drop --device cuda, or --quantize to decode on the GPU"
        )
    return "cpu" if device == "auto" else device
