#!/bin/bash
# The reduced study on one CUDA GPU in one go (about 8 minutes on an H200 is the plan, unmeasured):
# GPU throughput, dSprites rendered once, 36 runs x 6,000 steps (8 at once), then the report.
# Everything the study writes stays in /tmp/rs; $OUT (or ./rs_out) gets the tables and figures.
# Resumable: run it again on the same machine to finish an interrupted study.
export PYTHONUNBUFFERED=1 VAELAB_DATA=${VAELAB_DATA:-/tmp/vd} PYTHONPATH=$PWD
OUT=${OUT:-rs_out}; mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import torch, numpy, lightning; print(torch.__version__, numpy.__version__, lightning.__version__)"
timeout 75 python3 benchmarks/gpu_throughput.py --steps 100 --warmup 20 --batches 64,256 > $OUT/gpu_throughput.txt 2>&1
tail -15 $OUT/gpu_throughput.txt
time python3 -c "import vaelab; d = vaelab.load_dataset('dsprites'); print('dsprites', len(d))"
timeout ${STUDY_S:-400} python3 benchmarks/reduced_study.py --out /tmp/rs --device cuda --jobs 8 --threads 2 --steps 6000 > $OUT/study_train.log 2>&1
tail -5 $OUT/study_train.log
timeout 100 python3 benchmarks/reduced_study.py --out /tmp/rs --device cuda --report-only > $OUT/study_report.txt 2>&1
cat $OUT/study_report.txt
cp /tmp/rs/results.json /tmp/rs/sweep.csv /tmp/rs/rank_correlation.png /tmp/rs/spread.png $OUT/ 2>/dev/null
python3 - <<'PY' > $OUT/images_per_s.txt
import json, glob
for p in sorted(glob.glob('/tmp/rs/*/summary.json')):
    s = json.load(open(p)); print(p.split('/')[-2], s.get('steps'), s.get('images_per_s'), s.get('precision', ''))
PY
cat $OUT/images_per_s.txt | head -40
grep -l -i "error\|Traceback" /tmp/rs/logs/*.log | head -3 | xargs -r tail -20
