#!/usr/bin/env bash
# Does the `mini` recipe (64 px, batch 16, L1 + triplet, EMA 0.99, bf16) reach region dE00
# (self) <= 12 on the test split with many more steps, or does it flatten out?
#
# Run from the repository root on the GPU machine:   OUT=/some/folder bash results/gpu/long_run_command.sh
# needs: python3 with torch (CUDA), numpy, pandas, matplotlib, scipy, opencv, pillow, tqdm, and
# the carried render cache .cache/openmoji/64px-resvg0.48.1-line (no other paperlib extra).
#
# 1. one training process per seed (SEEDS, concurrently on the one GPU) times ~150 steps
#    while the others do, they agree on one step count N (a multiple of ROUND, <= MAX_N) that
#    ends by TRAIN_END s after the start, and train mini with max_steps=N, snapshot_every=N/8;
#    `timeout` stops a run that is still going at TRAIN_END+25 s (its snapshots stay usable);
# 2. meanwhile an evaluator measures every snapshot as it appears (evaluate.reference_use on
#    the whole test split and on the first TRAIN_N training images, CPU workers), until
#    EVAL_END s;
# 3. $OUT gets (8 files): log.txt, meta.json, stats-seed{0,1}.jsonl, curves-seed{0,1}.jsonl,
#    samples-seed{0,1}.png.  Summarise locally: python results/gpu/summarise.py <that folder>
set -u
cd "$(dirname "$0")/../.." || exit 2
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1

T0=$(date +%s)
PY=${PY:-python3}
WORK=${WORK:-$(mktemp -d /tmp/longrun.XXXXXX)}
SEEDS=${SEEDS:-"0 1"}
DEVICE=${DEVICE:-cuda}
TRAIN_END=${TRAIN_END:-345}      # s after start: training ends by then (N is sized for it)
EVAL_END=${EVAL_END:-430}        # s after start: evaluation stops, whatever is left
MAX_N=${MAX_N:-30000}
ROUND=${ROUND:-800}
STEPS=${STEPS:-}                 # fixed N: no calibration
CAL_WARM=${CAL_WARM:-25}
CAL_STEPS=${CAL_STEPS:-150}
TEST_N=${TEST_N:-0}              # 0: the whole test split (445 images)
TRAIN_N=${TRAIN_N:-48}           # notebook 02's training-image curve; 0 skips it
EVAL_WORKERS=${EVAL_WORKERS:-4}
EVAL_THREADS=${EVAL_THREADS:-2}
TRAIN_THREADS=${TRAIN_THREADS:-2}
EXTRA=${EXTRA:-}                 # more training overrides, e.g. "--set train.ema_decay=0.999"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg TQDM_DISABLE=1 PYTHONDONTWRITEBYTECODE=1

el() { echo $(( $(date +%s) - T0 )); }
ts() { echo "[$(date +%H:%M:%S) +$(el)s] $*"; }

ts "start in $PWD; WORK=$WORK OUT=$OUT SEEDS='$SEEDS' TRAIN_END=$TRAIN_END EVAL_END=$EVAL_END MAX_N=$MAX_N"
nvidia-smi --query-gpu=name,memory.total,memory.used,utilization.gpu,clocks.sm,power.draw --format=csv 2>&1 | head -5
nproc; free -g 2>/dev/null | head -2
"$PY" -c "import sys, torch, numpy, pandas, matplotlib, scipy, cv2, PIL; print('python', sys.version.split()[0], '| torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0), '| numpy', numpy.__version__, '| pandas', pandas.__version__, '| scipy', scipy.__version__)"
ls -la .cache/openmoji/64px-resvg0.48.1-line || ts "WARNING: the render cache is missing: training will fail"
git rev-parse --short HEAD 2>/dev/null && git status --short paperlib 2>/dev/null | head

RUNS=(); n=0
for s in $SEEDS; do RUNS+=(--run "$s:$WORK/seed$s"); n=$((n + 1)); done

OMP_NUM_THREADS=$EVAL_THREADS timeout $((EVAL_END + 5 - $(el))) "$PY" results/gpu/long_run.py curves \
    "${RUNS[@]}" --out "$OUT" --done-flag "$WORK/train.done" --t0 "$T0" \
    --deadline $((T0 + EVAL_END)) --test-n "$TEST_N" --train-n "$TRAIN_N" \
    --workers "$EVAL_WORKERS" --threads "$EVAL_THREADS" &
EVAL_PID=$!

nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv,noheader -l 30 \
    > >(sed -u 's/^/[nvidia-smi] /') 2>/dev/null &
SMI_PID=$!

PIDS=()
for s in $SEEDS; do
    STEP_ARGS=(); [ -n "$STEPS" ] && STEP_ARGS=(--steps "$STEPS")
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$TRAIN_THREADS timeout $((TRAIN_END + 25 - $(el))) "$PY" results/gpu/long_run.py train \
        --seed "$s" --run-dir "$WORK/seed$s" --peers-dir "$WORK" --n-peers "$n" --device "$DEVICE" \
        --train-end $((T0 + TRAIN_END)) --max-steps "$MAX_N" --round "$ROUND" \
        --cal-warm "$CAL_WARM" --cal-steps "$CAL_STEPS" --threads "$TRAIN_THREADS" \
        "${STEP_ARGS[@]}" $EXTRA &
    PIDS+=($!)
done
for i in "${!PIDS[@]}"; do
    wait "${PIDS[$i]}"; rc=$?
    ts "training process $i exited with $rc$([ $rc = 124 ] && echo ' (stopped by the time guard; its snapshots stay)')"
done
touch "$WORK/train.done"
kill "$SMI_PID" 2>/dev/null
ts "training over; nvidia-smi:"; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv 2>&1 | tail -1
wait "$EVAL_PID"; ts "evaluator exited with $?"

OMP_NUM_THREADS=${FINISH_THREADS:-4} timeout 30 "$PY" results/gpu/long_run.py finish "${RUNS[@]}" --out "$OUT" --t0 "$T0"
ts "finish exited with $?; $(ls "$OUT" | wc -l) files in OUT"
for s in $SEEDS; do du -sh "$WORK/seed$s" 2>/dev/null; done
ts "end"
sleep 1
