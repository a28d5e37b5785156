#!/usr/bin/env bash
# Rebuild the shipped cloud-removal weights and every number in their cards:
# training data from ../shared/data (seed 0: real pairs split by scene, real cloud shapes on real clear
# images and on the real S1 + S2 + DEM tiles, semi-synthetic terrain scenes), the default recipes
# (the networks that start from the fill), then the held-out evaluation of every shipped method and the
# fill (cards, models/weights/fill.json, models/weights/README.md, benchmarks/RESULTS.md).
# About 1.5 hours on 2 CPU cores shared with other work (resumes from build/checkpoints when stopped).
# Extra arguments go to the training script (e.g. --device cuda, --threads 1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
"$PY" scripts/build_training_data.py
"$PY" scripts/train_default_weights.py "$@"
"$PY" scripts/evaluate_cloud_removal.py --update-results
