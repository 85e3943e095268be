#!/usr/bin/env bash
# Run: bash recipes/shakespeare_char/sweep.sh NAME:OVERRIDES [NAME:OVERRIDES ...]
# One lane of the char-RNN sweeps (cells, truncated-BPTT length) at a fixed wall-clock budget:
# each job trains the recipe with its overrides for MINUTES minutes (default 8) on one torch
# thread (two lanes share 2 cores), validating every VALID_EVERY updates, in its own run folder
# runs/shakespeare_sweep/NAME. Compare them with
#   nmt-report runs/shakespeare_sweep/* --metric loss
# Example lane: bash recipes/shakespeare_char/sweep.sh rnn:model.cell=rnn gru:model.cell=gru
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
MINUTES=${MINUTES:-8}
VALID_EVERY=${VALID_EVERY:-40}
mkdir -p runs/shakespeare_sweep
export OMP_NUM_THREADS=1
"$BIN/nmt-prepare" --config-dir recipes/shakespeare_char --config-name shakespeare_char \
    hydra.run.dir=runs/shakespeare_sweep/.prepare > /dev/null 2>&1
for job in "$@"; do
  name=${job%%:*}; overrides=${job#*:}
  out=runs/shakespeare_sweep/$name
  start=$(date +%s)
  echo "$(date -u +%FT%TZ) start $name: $overrides" >> runs/shakespeare_sweep/lanes.log
  # shellcheck disable=SC2086  # the overrides are words on purpose
  "$BIN/nmt-train" --config-dir recipes/shakespeare_char --config-name shakespeare_char \
      train.threads=1 train.max_minutes="$MINUTES" train.valid_every="$VALID_EVERY" $overrides \
      hydra.run.dir="$out" > "runs/shakespeare_sweep/$name.train.log" 2>&1
  end=$(date +%s)
  echo "$(date -u +%FT%TZ) done $name: train $((end-start)) s" >> runs/shakespeare_sweep/lanes.log
done
