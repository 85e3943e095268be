"""What a server accepts and how it batches: one dataclass, every default in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nmt.errors import ConfigError


def _limit(default: Any, what: str) -> Any:
    """A settings field; ``what`` is the help of its command-line flag."""
    return field(default=default, metadata={"help": what})


@dataclass
class ServeSettings:
    """Limits of ``nmt-serve`` (each is a command-line flag of the same name).

    Requests waiting in the queue are batched: the decoding thread waits up to
    ``batch_window_ms`` after the first one arrives, then takes queued requests, oldest first,
    until their source pieces reach ``max_batch_tokens`` (a larger request goes alone).
    ``batch_window_ms=0`` and ``max_batch_tokens=1`` decode every request alone.
    """

    batch_window_ms: float = _limit(5.0, "ms an idle server waits for more requests")
    max_batch_tokens: int = _limit(2000, "source pieces decoded in one call")
    max_queue: int = _limit(64, "requests waiting; one more is refused with 503")
    max_sentences: int = _limit(64, "sentences per request")
    max_chars: int = _limit(1000, "characters per sentence, prefix or term")
    max_body_bytes: int = _limit(1 << 20, "bytes per request body")
    max_beam: int = _limit(16, "largest beam and n_best of a request")
    max_length_penalty: float = _limit(5.0, "largest length_penalty of a request")
    max_terms: int = _limit(100, "[source, target] term pairs per request")
    # each such hypothesis returns its (target x source) attention matrix (~100k numbers)
    max_aligned: int = _limit(64, "hypotheses (sentences x n_best) per request with alignments")

    def check(self) -> None:
        """Refuse settings that cannot work.

        Raises:
            ConfigError: naming the flag.
        """
        for name in (
            "max_batch_tokens",
            "max_queue",
            "max_sentences",
            "max_chars",
            "max_body_bytes",
            "max_beam",
            "max_aligned",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{flag(name)} must be at least 1 (got {getattr(self, name)})")
        if self.max_terms < 0 or self.batch_window_ms < 0 or self.max_length_penalty < 0:
            raise ConfigError(
                "--max-terms, --batch-window-ms and --max-length-penalty cannot be negative"
            )

    def public(self) -> dict[str, Any]:
        """The limits as JSON (``GET /models``: the page reads ``max_beam`` from it)."""
        return asdict(self)


def flag(name: str) -> str:
    """The command-line flag of a settings field: ``max_queue`` -> ``max-queue``."""
    return name.replace("_", "-")
