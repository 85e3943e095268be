#!/usr/bin/env bash
# Run: make quickstart
# The README's first command: Multi30k en->fr, prepared, trained for <= 12 minutes on 2 CPU
# cores, translated with beam 5 and scored (cased sacreBLEU and chrF on test_2016_flickr),
# then three example translations.
set -euo pipefail
cd "$(dirname "$0")/../.."
SPLITS=${SPLITS:-test_2016_flickr} EXAMPLES=${EXAMPLES:-3} bash recipes/run.sh quickstart "$@"
