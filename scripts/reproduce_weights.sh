#!/usr/bin/env bash
# Rebuild the shipped cloud-removal weights and every number in their model cards:
# training data from ../shared/data (seed 0), the five default recipes, then the held-out
# evaluation against the baselines (model cards, models/weights/README.md, benchmarks/RESULTS.md).
# About 45 to 90 minutes on 2 CPU cores, depending on the CPU. Extra arguments go to the training script (e.g. --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
"$PY" scripts/build_training_data.py
"$PY" scripts/train_default_weights.py "$@"
"$PY" scripts/evaluate_cloud_removal.py --update-results
