#!/usr/bin/env bash
# GPU checks through the `device` tool (64 MiB travel per call): issue 3's, in three back-to-back
# calls, and issue 14's speed sweep, in one (below).
#
# Here, once (no GPU needed; writes only the ignored folders .whl/ and .data/):
#   bash benchmarks/device_kit.sh pack
# makes .whl/ (the wheels the GPU image lacks: tfds, clu, ml_collections, ... for Python 3.12)
# and .data/cifar100.tar.part-aa, -ab, -ac (CIFAR-100 (re-split) from ../shared, < 48 MiB each)
# with .data/cifar100.tar.sha256. Then, back to back (the machine stays warm only 30 s):
#   run(carry=[".data/cifar100.tar.part-aa"], command="bash benchmarks/device_kit.sh receive")
#   run(carry=[".data/cifar100.tar.part-ab"], command="bash benchmarks/device_kit.sh receive")
#   run(carry=[".data/cifar100.tar.part-ac", ".data/cifar100.tar.sha256", ".whl"],
#       command="bash benchmarks/device_kit.sh run", timeout_s=600)
# `run` writes to $OUT: the bfloat16 benchmark JSON, the log, history and results of a 100-epoch
# `configs/vgg19_att.py` run in bfloat16 (stopped after $RUN_SECONDS, default 330), then the
# float32 benchmark JSON. A dry run on CPU: PYTHON=.venv/bin/python OUT=/tmp/out
# KIT_CONFIG=configs/tiny.py KIT_FLAGS="--config.train_examples=256 --config.num_epochs=2
# --config.lr_boundaries_epochs=(1,)"
# BENCH_STEPS=1 bash benchmarks/device_kit.sh run (after `pack` and `receive`).
#
# Issue 14's sweep (benchmarks/device_sweep.py) needs no data, so one call after `pack`:
#   run(carry=[".whl"], command="bash benchmarks/device_kit.sh sweep", timeout_s=540)
# (its candidates stop starting after 450 s; SWEEP_FLAGS="--dry_run" runs it on CPU).
set -euo pipefail

KIT=/tmp/ltpa_kit
PYTHON=${PYTHON:-python3}
CONFIG=${KIT_CONFIG:-configs/vgg19_att.py}
read -r -a FLAGS <<< "${KIT_FLAGS:-}"

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

install() {  # the carried wheels, for this shell's Python
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$KIT/site" .whl/*.whl
  export PYTHONPATH="$KIT/site:$PWD" PYTHONUNBUFFERED=1
}

sweep() {  # issue 14's speed candidates on synthetic data: needs only .whl
  : "${OUT:?set OUT to the folder for the results}"
  install
  (nvidia-smi -L || echo "no nvidia-smi") > "$OUT/device.txt"
  "$PYTHON" benchmarks/device_sweep.py --out "$OUT" ${SWEEP_FLAGS:-}
}

run() {
  : "${OUT:?set OUT to the folder for the results}"
  receive
  install
  [[ "$(cat "$KIT"/cifar100.tar.part-* | sha256sum | cut -d' ' -f1)" == \
     "$(cat .data/cifar100.tar.sha256)" ]] || { echo "CIFAR-100 parts incomplete" >&2; exit 1; }
  rm -rf "$KIT/tfds" "$KIT/run" && mkdir -p "$KIT/tfds"
  cat "$KIT"/cifar100.tar.part-* | tar xf - -C "$KIT/tfds"
  (nvidia-smi -L || echo "no nvidia-smi") > "$OUT/device.txt"
  local steps=${BENCH_STEPS:-100}
  "$PYTHON" -m ltpa_jax.benchmark --config "$CONFIG" --config.model.dtype=bfloat16 \
    "${FLAGS[@]}" --steps "$steps" --out "$OUT/bench_bf16.json" > "$OUT/bench_bf16.log" 2>&1 \
    || tail -n 5 "$OUT/bench_bf16.log"
  local status=0
  timeout "${RUN_SECONDS:-330}" "$PYTHON" train.py --config "$CONFIG" --workdir "$KIT/run" \
    --config.data_dir="$KIT/tfds" --config.model.dtype=bfloat16 "${FLAGS[@]}" \
    > "$OUT/train.log" 2>&1 || status=$?
  echo "train.py exit status $status (124: stopped after ${RUN_SECONDS:-330} s)" >> "$OUT/train.log"
  cp "$KIT/run/history.json" "$OUT/" 2>/dev/null || true
  cp "$KIT/run/results.json" "$OUT/" 2>/dev/null || true
  "$PYTHON" -m ltpa_jax.benchmark --config "$CONFIG" "${FLAGS[@]}" --steps "$steps" \
    --out "$OUT/bench_fp32.json" > "$OUT/bench_fp32.log" 2>&1 || tail -n 5 "$OUT/bench_fp32.log"
  tail -n 3 "$OUT/train.log"
  grep -h '"train_images_per_second"\|"compile_seconds"' "$OUT"/bench_*.json || true
}

case "${1:-}" in
  pack | receive | run | sweep) "$1" ;;
  *) echo "usage: bash benchmarks/device_kit.sh pack|receive|run|sweep" >&2; exit 2 ;;
esac
