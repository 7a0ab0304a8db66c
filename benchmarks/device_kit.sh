#!/usr/bin/env bash
# The GPU queue's jobs (benchmarks/GPU_QUEUE.md) through the `device` tool (64 MiB travel a call).
#
# Here, once (no GPU needed; writes only the ignored folders .whl/ and .data/):
#   bash benchmarks/device_kit.sh pack
# makes .whl/ (the wheels the GPU image lacks: tfds, clu, ml_collections, ... for Python 3.12)
# and .data/cifar100.tar.part-aa, -ab, -ac (CIFAR-100 (re-split) from ../shared, < 48 MiB each)
# with .data/cifar100.tar.sha256. A device session then makes its calls back to back (the
# machine stays warm only 30 s after each):
#   run(carry=[".data/cifar100.tar.part-aa"], command="bash benchmarks/device_kit.sh receive")
#   run(carry=[".data/cifar100.tar.part-ab"], command="bash benchmarks/device_kit.sh receive")
#   run(carry=[".data/cifar100.tar.part-ac", ".data/cifar100.tar.sha256", ".whl"],
#       command="COMMIT=<short hash> bash benchmarks/device_kit.sh <job verb>", timeout_s=570)
# Job verbs:
#   job1         job 1: benchmarks/job1.py's stages ($STAGES, comma-separated; default profile,
#                baseline, peer, candidates, acceptance), in $BUDGET_SECONDS (default 540);
#                $CANDIDATES: the sweep's candidates to measure (';'-separated; default all);
#                writes job1.json, job1.tar and trace/ to $OUT after each stage. Called again
#                while the machine is warm with the stages left, it goes on. Only the
#                acceptance stage needs the data (the two `receive` calls first).
#   runs         jobs 2-3: `python -m ltpa_jax.table` of $CONFIGS (comma-separated, default
#                configs/vgg19.py) x $SEEDS (default 0) in $LAYOUT (default vmap), bfloat16,
#                stopped by SIGTERM after $RUN_SECONDS (default 480; it saves). Called again
#                while the machine is warm (carry nothing more), it resumes. Once the table is
#                done it runs robustness and visualize on every run and puts their small files
#                in $OUT/results.tar (results/<card>_$COMMIT/<config>/seed_<s>/...).
#   sweep        issues 14's and 29's speed sweep alone (no data needed: carry only .whl);
#                $SWEEP_ONLY: the candidates to run, names separated by ';' (default: all).
#   peer         benchmarks/torch_peer.py --jax: the PyTorch peer's three modes and the JAX
#                baseline in one call (no data needed: carry only .whl); writes torch_peer.json.
#   profile      benchmarks/profile_steps.py: 20 traced steps of the benchmark (bfloat16
#                vgg19_att; $MODEL_FIELDS, space-separated field=value, e.g.
#                "conv_bias_free=True"), summarised in profile.md and profile.json, the trace in
#                $OUT/trace (carry only .whl).
# Dry runs on CPU (after `pack`; OUT, KIT and PYTHON as you like): DRY_RUN=1 runs each job with
# the tiny config on a few hundred images (job1 with DATA_DIR=../shared/tensorflow_datasets
# needs no `pack`).
set -euo pipefail

KIT=${KIT:-/tmp/ltpa_kit}
PYTHON=${PYTHON:-python3}
DRY_RUN=${DRY_RUN:-}
# The tiny config on 512 images, 3 epochs: what a CPU dry run of `runs` trains.
DRY_RUN_FLAGS=(--config.model.width_multiplier=0.0625 --config.train_examples=512
               --config.num_epochs=3 "--config.lr_boundaries_epochs=(2,)" --config.batch_size=32)

pack() {
  local shared=../shared/tensorflow_datasets
  [[ -d $shared/cifar100 ]] || { echo "no CIFAR-100 in $shared" >&2; exit 1; }
  mkdir -p .whl .data
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl tensorflow-datasets==4.9.10 clu==0.0.12 \
    ml-collections==1.1.0 array-record==0.8.6 tensorboard==2.21.0 dm-tree==0.1.10 \
    immutabledict==4.3.1 simple-parsing==0.1.9 tensorflow-metadata==1.21.0 termcolor==3.3.0 \
    toml==0.10.2 docstring-parser==0.18.0 googleapis-common-protos==1.76.0
  "$PYTHON" -m pip wheel -q --no-deps -w .whl promise==2.3  # an sdist only: built here
  rm -f .data/cifar100.tar.part-*
  tar cf - -C "$shared" cifar100 | tee >(sha256sum | cut -d' ' -f1 > .data/cifar100.tar.sha256) \
    | split -b 47M - .data/cifar100.tar.part-
  ls -la .whl .data
}

receive() {  # keeps this call's parts where the next calls find them
  mkdir -p "$KIT"
  cp .data/cifar100.tar.part-* "$KIT"/
  ls -la "$KIT"
}

install() {  # the carried wheels (Python 3.12's), for this shell's Python; a dry run has its own
  [[ -n $DRY_RUN ]] || "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$KIT/site" .whl/*.whl
  export PYTHONPATH="$KIT/site:$PWD" PYTHONUNBUFFERED=1
}

prepare() {  # the wheels, and the device's name in $OUT/device.txt
  : "${OUT:?set OUT to the folder for the results}"
  install
  (nvidia-smi -L || echo "no nvidia-smi") > "$OUT/device.txt"
}

unpack() {  # the data and wheels, once per machine: a resumed job finds them in $KIT
  prepare
  [[ -d $KIT/tfds/cifar100 ]] && return
  receive
  [[ "$(cat "$KIT"/cifar100.tar.part-* | sha256sum | cut -d' ' -f1)" == \
     "$(cat .data/cifar100.tar.sha256)" ]] || { echo "CIFAR-100 parts incomplete" >&2; exit 1; }
  mkdir -p "$KIT/tfds" && cat "$KIT"/cifar100.tar.part-* | tar xf - -C "$KIT/tfds"
}

sweep() {  # issue 14's speed candidates on synthetic data: needs only .whl
  prepare
  "$PYTHON" benchmarks/device_sweep.py --out "$OUT" ${DRY_RUN:+--dry_run} \
    ${SWEEP_ONLY:+--only "$SWEEP_ONLY"}
}

peer() {  # the PyTorch peer beside the JAX baseline: needs only .whl
  prepare
  "$PYTHON" benchmarks/torch_peer.py --out "$OUT/torch_peer.json" --jax ${DRY_RUN:+--dry_run}
}

profile() {  # where a training step's time goes: needs only .whl
  prepare
  local fields=() field
  for field in ${MODEL_FIELDS:-}; do fields+=(--model "$field"); done
  "$PYTHON" benchmarks/profile_steps.py --out "$OUT" "${fields[@]}" ${DRY_RUN:+--dry_run}
}

job1() {  # job 1: the data only for its acceptance stage
  local stages=${STAGES:-profile,baseline,peer,candidates,acceptance} data=()
  if [[ $stages == *acceptance* && -z ${DATA_DIR:-} ]]; then
    unpack
  else
    prepare
  fi
  [[ $stages == *acceptance* ]] && data=(--data_dir "${DATA_DIR:-$KIT/tfds}")
  "$PYTHON" benchmarks/job1.py --out "$OUT" --work "$KIT/job1" --stages "$stages" "${data[@]}" \
    --budget_s "${BUDGET_SECONDS:-540}" ${CANDIDATES:+--candidates "$CANDIDATES"} \
    ${DRY_RUN:+--dry_run}
}

runs() {  # jobs 2-3
  unpack
  local table=$KIT/table status=0
  local flags=(--config.data_dir="$KIT/tfds" --config.model.dtype=bfloat16)
  [[ -n $DRY_RUN ]] && flags+=("${DRY_RUN_FLAGS[@]}")
  timeout -s TERM -k 120 "${RUN_SECONDS:-480}" "$PYTHON" -m ltpa_jax.table \
    --configs "${CONFIGS:-configs/vgg19.py}" --seeds "${SEEDS:-0}" \
    --seed_layout "${LAYOUT:-vmap}" --workdir "$table" "${flags[@]}" 2>&1 \
    | tee -a "$table.log" > "$OUT/table.log" || status=$?
  [[ -f $table/table.md ]] || { tail -n 3 "$OUT/table.log"; echo "table not finished" \
    "(status $status): call again to resume"; return; }
  local card runs_=() run
  card=$( (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo cpu) \
         | head -n 1 | awk '{print tolower($NF)}')
  for run in "$table"/*/seed_*; do runs_+=(--workdir "$run"); done
  "$PYTHON" -m ltpa_jax.robustness "${runs_[@]}" --epsilons 0,1,2,4,8 \
    ${DRY_RUN:+--test_images 200} --out "$table/robustness.png" > "$table/robustness.log" 2>&1 || tail -n 3 "$table/robustness.log"
  for run in "$table"/*/seed_*; do
    "$PYTHON" -m ltpa_jax.visualize --workdir "$run" --out "$run/attention.png" \
      --indices 0,1,2,3,4,5,6,7 > /dev/null 2>&1 || true  # models without attention: no maps
  done
  local dest=results/${card}_${COMMIT:-unknown}
  rm -rf "$KIT/bundle" && mkdir -p "$KIT/bundle/$dest"
  cp "$table.log" "$table/table.md" "$table/robustness.png" "$table/robustness.log" \
    "$KIT/bundle/$dest/" 2>/dev/null || true
  (cd "$table" && find . -name checkpoints -prune -o -type f \( -name '*.json' -o \
     -name '*.png' -o -name 'events.out.tfevents.*' \) -print \
     | tar cf - -T - | tar xf - -C "$KIT/bundle/$dest")
  tar cf "$OUT/results.tar" -C "$KIT/bundle" results
  cat "$table/table.md"
}

case "${1:-}" in
  pack | receive | job1 | runs | sweep | peer | profile) "$1" ;;
  *) echo "usage: bash benchmarks/device_kit.sh pack|receive|job1|runs|sweep|peer|profile" >&2
     exit 2 ;;
esac
