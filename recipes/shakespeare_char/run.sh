#!/usr/bin/env bash
# Run: make shakespeare
# Character-level LSTM language model on tiny Shakespeare: prepare, train (validation loss
# in nats and bits per character), then 600 generated characters.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
RUN=${RUN:-runs/shakespeare_char/$(date +%Y-%m-%d_%H-%M-%S)}
args=(--config-dir recipes/shakespeare_char --config-name shakespeare_char)
"$BIN/nmt-prepare" "${args[@]}" "$@" hydra.run.dir="$RUN"
"$BIN/nmt-train" "${args[@]}" "$@" hydra.run.dir="$RUN"
"$BIN/nmt-generate" "$RUN" --chars "${CHARS:-600}"
