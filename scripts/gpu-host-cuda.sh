#!/usr/bin/env bash
# Everything the CUDA backend needs checked on the GPU host, in one call (see ../shared/gpu-host):
# the shared suite on cpu + cuda with outputs poisoned, the block-sparse kernels under
# compute-sanitizer (memcheck, racecheck), the kernel benchmark, and the GPT step against PyTorch.
# Logs go to $OUT (or ./gpu-out); the last lines printed are the summary.
#   source .gpu-host/setup.sh && bash scripts/gpu-host-cuda.sh [tests] [sanitize] [bench] [step] [compare] [profile] [webgpu] [tune-webgpu] [mixed] [mixed-step] [nanogpt]
# mixed: the 16-bit dtypes, fused attention and captured steps on cuda (tests, compute-sanitizer on
# the new kernels, the PyTorch interop of BF16/F16 files, attention against PyTorch's flash SDPA);
# mixed-step: the GPT step in fp32 and bf16, eager and captured, against PyTorch eager / SDPA /
# compile (each part fits one device call). nanogpt: issue 26's nanoGPT run in PyTorch and
# sparsegrad (captured; the runs NANOGPT names, below) on DATA (default .data/tinyshakespeare.txt,
# carried: cp the shared file there first), ITERS iterations (default 5000).
# BENCH_ARGS go to benchmarks/cuda.ts (with --write, the updated docs/benchmarks.md is copied to
# $OUT); PRECISIONS (default "highest high") to the step and compare parts. The suite runs through
# scripts/run-tests.ts, not `npm test`: the packed tree has no TypeScript compiler, and its dist/
# (which the CLI tests run) was built before packing.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
parts=${*:-tests sanitize bench step}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu --format=csv > "$OUT/gpu.txt" 2>&1
summary=()
for part in $parts; do
  case $part in
    tests)
      SPARSEGRAD_TEST_POISON=1 SPARSEGRAD_TEST_BACKENDS=cpu,cuda timeout 400 npx tsx scripts/run-tests.ts > "$OUT/tests.log" 2>&1
      summary+=("tests: $(tail -1 "$OUT/tests.log")") ;;
    sanitize)
      for tool in memcheck racecheck; do
        SPARSEGRAD_SANITIZE=1 SPARSEGRAD_TEST_POISON=1 SPARSEGRAD_TEST_BACKENDS=cuda timeout 300 /usr/local/cuda/bin/compute-sanitizer --tool $tool --target-processes all --report-api-errors no \
          --error-exitcode 9 npx tsx scripts/run-tests.ts blocksparse optim packages/cuda > "$OUT/sanitize-$tool.log" 2>&1
        summary+=("compute-sanitizer $tool: exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize-$tool.log" | sort | uniq -c | tr '\n' ' ') $(tail -1 "$OUT/sanitize-$tool.log")")
      done ;;
    bench)
      timeout 400 npx tsx benchmarks/cuda.ts ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
      summary+=("bench: exit $?")
      [[ "${BENCH_ARGS:-}" == *--write* ]] && cp docs/benchmarks.md "$OUT/" ;;
    step)
      for p in ${PRECISIONS:-highest high}; do
        timeout 300 npx tsx benchmarks/gpt-step.ts --backend cuda --precision $p >> "$OUT/step.log" 2>&1
        timeout 200 python3 benchmarks/torch_gpt_step.py --precision $p >> "$OUT/step.log" 2>&1
      done
      summary+=("step: see step.log") ;;
    compare)
      for p in ${PRECISIONS:-highest high}; do
        timeout 400 npx sparsegrad compare --backend cuda --precision $p --layers 6 --d-model 512 --heads 8 --seq 256 --batch 32 --steps 300 \
          --densities 0.5,0.25,0.1 --out "$OUT/compare-$p" > "$OUT/compare-$p.log" 2>&1
        summary+=("compare $p: exit $?")
      done ;;
    profile)
      # The step's host time per addon call and device time per queued item (benchmarks/host-overhead.ts).
      for p in ${PRECISIONS:-highest high}; do
        timeout 150 npx tsx benchmarks/host-overhead.ts --real --kernels --precision $p >> "$OUT/profile.log" 2>&1
      done
      summary+=("profile: see profile.log") ;;
    webgpu)
      SPARSEGRAD_TEST_BACKENDS=cpu,webgpu timeout 300 npx tsx scripts/run-tests.ts > "$OUT/webgpu-tests.log" 2>&1
      summary+=("webgpu tests: $(tail -1 "$OUT/webgpu-tests.log")")
      timeout 150 npx tsx benchmarks/webgpu-step.ts --batch 32 > "$OUT/webgpu-step.log" 2>&1
      timeout 300 npx sparsegrad compare --backend webgpu --layers 6 --d-model 512 --heads 8 --seq 256 --batch 32 --steps 300 \
        --densities 0.5,0.25,0.1 --out "$OUT/compare-webgpu" > "$OUT/compare-webgpu.log" 2>&1
      summary+=("webgpu step and compare: exit $?") ;;
    mixed)
      SPARSEGRAD_TEST_POISON=1 SPARSEGRAD_TEST_BACKENDS=cuda timeout 300 npx tsx scripts/run-tests.ts dtypes attention capture kernel-names elementwise blocksparse packages/cuda/test/cuda > "$OUT/mixed-tests.log" 2>&1
      summary+=("mixed tests: $(tail -1 "$OUT/mixed-tests.log")")
      # The new kernels under compute-sanitizer: memcheck over the 16-bit and attention tests,
      # racecheck (much slower) over the attention tests, both dQ forms (cuda.test.ts compares them).
      for run in "memcheck attention dtypes packages/cuda/test/cuda" "racecheck attention packages/cuda/test/cuda"; do
        set -- $run
        tool=$1
        shift
        SPARSEGRAD_SANITIZE=1 SPARSEGRAD_TEST_BACKENDS=cuda timeout 200 /usr/local/cuda/bin/compute-sanitizer --tool $tool --target-processes all --report-api-errors no \
          --error-exitcode 9 npx tsx scripts/run-tests.ts "$@" > "$OUT/mixed-sanitize-$tool.log" 2>&1
        summary+=("compute-sanitizer $tool ($*): exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/mixed-sanitize-$tool.log" | sort | uniq -c | tr '\n' ' ')")
      done
      (npx tsx scripts/interop/write-checkpoint.ts "$OUT/interop" && python3 scripts/interop/check_safetensors.py "$OUT/interop" \
        && npx tsx scripts/interop/read-torch-half.ts "$OUT/interop") > "$OUT/interop.log" 2>&1
      summary+=("interop: exit $?")
      timeout 120 npx tsx benchmarks/attention.ts > "$OUT/attention.log" 2>&1
      timeout 60 python3 benchmarks/torch_attention.py >> "$OUT/attention.log" 2>&1
      summary+=("mixed: see mixed-*.log, attention.log") ;;
    mixed-step)
      # Issue 26's GPT step: fp32 and bf16, eager and captured, against PyTorch in the same call (~5 min).
      for p in highest bf16; do
        for c in "" --capture; do timeout 200 npx tsx benchmarks/gpt-step.ts --backend cuda --densities 0.25 --precision $p $c >> "$OUT/mixed-step.log" 2>&1; done
      done
      for a in "--precision highest" "--autocast bf16" "--autocast bf16 --sdpa --fused" "--autocast bf16 --sdpa --compile --fused"; do
        timeout 200 python3 benchmarks/torch_gpt_step.py $a >> "$OUT/mixed-step.log" 2>&1
      done
      summary+=("mixed-step: see mixed-step.log") ;;
    nanogpt)
      # NANOGPT (default "torch bf16"): which runs, each its own log: torch (the PyTorch reference),
      # bf16, fp32 (goal 5's curve) and sparse (bf16 with the MLPs at density 0.25).
      data=${DATA:-.data/tinyshakespeare.txt}
      model=(--data "$data" --val-fraction 0.1 --layers 6 --heads 6 --d-model 384 --seq 256 --batch 64 --dropout 0.2 --no-bias --gelu exact
        --tie-embeddings --init-std 0.02 --steps ${ITERS:-5000} --lr 1e-3 --min-lr 1e-4 --warmup 100 --beta2 0.99 --weight-decay 0.1 --clip 1
        --eval-every 250 --eval-mode random --eval-batches 200 --decay-params matrices --backend cuda --capture)
      for run in ${NANOGPT:-torch bf16}; do
        case $run in
          torch) timeout 500 python3 benchmarks/torch_nanogpt.py --data "$data" --iters ${ITERS:-5000} > "$OUT/nanogpt-torch.log" 2>&1 ;;
          bf16) timeout 600 npx sparsegrad train "${model[@]}" --precision bf16 --out "$OUT/nanogpt-bf16" > "$OUT/nanogpt-bf16.log" 2>&1 ;;
          fp32) timeout 600 npx sparsegrad train "${model[@]}" --precision highest --out "$OUT/nanogpt-fp32" > "$OUT/nanogpt-fp32.log" 2>&1 ;;
          sparse) timeout 600 npx sparsegrad train "${model[@]}" --precision bf16 --sparsify 'layers\.[0-9]+\.mlp\.fc[12]' --density 0.25 \
            --out "$OUT/nanogpt-sparse" > "$OUT/nanogpt-sparse.log" 2>&1 ;;
        esac
        summary+=("nanogpt $run: exit $? (see nanogpt-$run.log)")
      done
      # Goal 5: the bf16 curve against the fp32 one, where both ran.
      [[ -f "$OUT/nanogpt-bf16.log" && -f "$OUT/nanogpt-fp32.log" ]] && npx tsx benchmarks/curves.ts "$OUT/nanogpt-bf16.log" "$OUT/nanogpt-fp32.log" > "$OUT/nanogpt-curves.log" 2>&1 \
        && summary+=("nanogpt curves: $(tail -1 "$OUT/nanogpt-curves.log")") ;;
    tune-webgpu)
      timeout 300 npx tsx benchmarks/webgpu.ts --tune --tune-only > "$OUT/tune-webgpu.log" 2>&1
      summary+=("webgpu tuning: exit $?") ;;
  esac
done
printf '%s\n' "${summary[@]}"
