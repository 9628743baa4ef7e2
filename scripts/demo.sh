#!/usr/bin/env bash
# The main job on the embedded default: set up, generate SynthCXR, train the bundle with
# `python -m monai.bundle run training`, evaluate zero-shot on the test split, print the table.
# Re-running resumes: existing data is kept, training continues from the last checkpoint, and a
# finished training is kept as it is (--finished_run keep) and evaluated again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$MEDFILIP_ROOT"
DATA_DIR="${DATA_DIR:-data/synthcxr}"
N_IMAGES="${N_IMAGES:-2000}"
UNSEEN="${UNSEEN:-mass,bulla}"  # held out of training, scored zero-shot on test

if [ ! -f "$DATA_DIR/datalist.json" ]; then
    python scripts/make_demo_data.py --out "$DATA_DIR" --n "$N_IMAGES" --size 224 --seed 0 --unseen "$UNSEEN"
fi
python -m monai.bundle run training \
    --config_file configs/train.json --meta_file metadata.json --logging_file configs/logging.conf \
    --dataset_dir "$DATA_DIR" --finished_run keep "$@"
python -m monai.bundle run \
    --config_file "['configs/train.json','configs/evaluate.json']" --meta_file metadata.json \
    --logging_file configs/logging.conf --dataset_dir "$DATA_DIR" "$@"
python scripts/summarize_results.py --metrics eval/zero_shot_metrics.json --output docs/results.md
