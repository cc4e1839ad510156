#!/usr/bin/env bash
# docs/study-ray.md "the shipped example study": irlens study examples/study.yaml (its
# datasets are ../../shared/data relative to the yaml, i.e. ../shared/data beside the
# repository). Writes docs/results/study_evaluate.json, study_faithfulness.json and
# study_prune.json from the report's report.json.
# About 30 min on 2 CPU cores (40 jobs; a rerun resumes, a finished study takes seconds).
set -euo pipefail
cd "$(dirname "$0")/../.."                 # the repository root
DATA=${IRLENS_DATA:-../shared/data}        # BEIR folders (never copied into the repository)
OUT=${OUT:-results/reproduce/study}
irlens study examples/study.yaml --out "$OUT" --json > /dev/null   # about 30 min
python docs/reproduce/convert.py study "$OUT"
python docs/tables.py
