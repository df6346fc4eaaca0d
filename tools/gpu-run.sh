#!/bin/sh
# gpu-run.sh — the one script for the GPU machine: build here, pack, run there.
#
# The GPU machine has CUDA (driver, nvcc, cuBLAS) but no meson, protobuf-c or
# Check, so everything is built here for sm_90 with those libraries linked
# statically (meson -Dprefer_static=true), and gathered with the models, the
# references and the tokenizer vocabulary the tests need into one ignored
# folder, gpu-pack/ (under 64 MiB).
#
#   here:    tools/gpu-run.sh pack          build build-gpu/ and fill gpu-pack/
#   there:   sh tools/gpu-run.sh device     run the GPU tests and the benchmark
#
# The real Qwen2.5-Coder-0.5B file (491 MB, from tools/fetch-models) cannot
# travel in one call, so it is staged in parts while the machine stays warm
# (it goes back after 30 s idle: make the calls back to back):
#   here:    tools/gpu-run.sh stage         split it into gpu-stage/qwen.partNN (60 MiB each)
#   there:   one call per part, carry ["gpu-stage/qwen.partNN"], command `true`
#            (ignored paths already there stay between calls), then, with
#            carry ["gpu-pack"]:
#            sh tools/gpu-run.sh device-real
#            which joins the parts, checks the sha256, and runs the real-model
#            suite on CUDA (haiku, coherence, 3 prompts x 3 seeds x 10 runs),
#            a haiku through tools/orcd, and orcd-bench on the real file.
#
# The one device command (device tool `run`, with carry ["gpu-pack"]):
#   sh tools/gpu-run.sh device
# or, with the pack copied elsewhere (it carries this script):
#   sh gpu-pack-cuda/gpu-run.sh device
# It writes under $OUT: test-cuda.log (every test, the per-type relative L2
# errors CUDA vs CPU, greedy and reproducibility results), bench.jsonl (one
# orcd-bench JSON per weight type: F16, Q8_0, Q4_K_M synthetic Qwen2.5-0.5B
# files from orcd-synth), bench.log, and nvidia-smi.txt. Options, as
# environment variables:
#   GPU_RUN_TESTS=0        skip the tests        GPU_RUN_BENCH=0  skip the benchmark
#   GPU_RUN_ORCD_BENCH=0   skip orcd-bench (batch-1 through the tool) in the benchmark
#   (the benchmark also runs test-cuda --bench per type: aggregate decode tok/s at
#   1/8/32/64 streams and prefill tok/s at 512/4096/16384 tokens, bench-batch.jsonl)
#   GPU_RUN_SOAK=0         skip test-soak (1,000 requests) on cuda
#   GPU_RUN_WORKER_TESTS=0 skip test-worker on cuda   GPU_RUN_OOM=0 skip the VRAM refusal check
#   GPU_RUN_REPRO=0        skip the 10 runs through the worker
#   GPU_RUN_TYPES="f16 q8_0 q4_k_m"
#   GPU_RUN_CONC=1 [GPU_RUN_NPL=1,2,4,...]  also orcd-bench --modes concurrency --sched phased per type
#   (a pack made with GPU_PACK_EXTRA=.../orcd-bench-old also runs that binary beside the new one)
#   GPU_RUN_VARIANTS="VAR=1 ..."  also run orcd-bench with each environment setting (the backend reads none today)
#   GPU_RUN_NCU=1 [GPU_RUN_NCU_TYPE=q8_0]         per-kernel durations of a few decode steps (ncu-TYPE.csv)
#   GPU_RUN_SANITIZER=1    compute-sanitizer memcheck over test-cuda's greedy and sampler cases
#
# A/B benchmark of orcd-bench builds in one call, from a small pack (a few MB:
# it starts and travels faster than gpu-pack):
#   here:    tools/gpu-run.sh pack-bench NAME=PATH ...   (e.g. old=/tmp/orcd-bench-99e8a5d new=build-gpu/tools/orcd-bench)
#   there:   sh gpu-pack-bench/gpu-run.sh device-bench   (carry ["gpu-pack-bench"])
# which prints "TYPE NAME ROUND prefill P decode D" for GPU_RUN_TYPES (default
# f16 q8_0 q4_k_m), GPU_RUN_ROUNDS rounds (default 2) of every build in turn,
# writes their JSON to $OUT/ab-TYPE-NAME-ROUND.json, and with GPU_RUN_NCU=1 the
# per-kernel table of one decode step per build (ncu-TYPE-NAME.csv, tools/ncu-step.py).
set -eu

self=$(cd "$(dirname "$0")" && pwd)
here=$(cd "$self/.." && pwd)
# run from inside a pack (a copy of this script at gpu-pack*/gpu-run.sh), or from tools/
if [ -d "$self/bin" ]; then pack=$self; else pack="$here/gpu-pack"; fi
mode=${1:-}

# On the device: the pack's shared/ (models and vocabulary unzipped) in /tmp/orcd-shared,
# its binaries (xz-compressed to fit the transfer) in /tmp/orcd-bin.
# run_check NAME TIMEOUT CMD...: one check, its output in $out/NAME.log, its
# summary lines printed; a failure's status is kept in rc.
run_check() {
    name=$1 limit=$2
    shift 2
    echo "== $name"
    set +e
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    st=$?
    set -e
    grep -E "Checks|:F:|:E:|^test-soak:" "$out/$name.log" | tail -5 || true
    echo "$name exit status $st"
    [ $st -eq 0 ] || rc=$st
}

# Nsight Compute's command line, or nothing.
find_ncu() {
    command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2> /dev/null | head -1 || true
}

unpack() {
    rm -rf /tmp/orcd-shared && cp -r "$pack/shared" /tmp/orcd-shared
    for z in /tmp/orcd-shared/models/*.xz; do [ -f "$z" ] && xz -d "$z"; done
    export ORCD_SHARED=/tmp/orcd-shared
    rm -rf /tmp/orcd-bin && mkdir -p /tmp/orcd-bin
    for f in "$pack"/bin/*; do
        case "$f" in *.xz) xz -dc "$f" > "/tmp/orcd-bin/$(basename "$f" .xz)" ;; *) cp "$f" /tmp/orcd-bin/ ;; esac
    done
    chmod +x /tmp/orcd-bin/*
}

case "$mode" in
pack)
    shared=${ORCD_SHARED:-$here/../shared}
    build="$here/build-gpu"
    if [ ! -d "$build" ]; then
        meson setup "$build" "$here" -Dprefer_static=true -Dbuildtype=release -Dgpu_arch=sm_90
    fi
    # (test-real-models stays out: the pack must stay under 62 MB; build it into a pack of its own for device-real)
    ninja -C "$build" tests/test-cuda tests/test-worker tests/test-batch tests/test-soak tests/test-deq16 \
        tools/orcd-synth tools/orcd-bench tools/orcd worker/worker-orcd
    rm -rf "$pack"
    mkdir -p "$pack/bin" "$pack/lib" "$pack/shared/models" "$pack/shared/reference/stories260K" \
        "$pack/shared/reference/tiny-qwen2"
    for b in tests/test-cuda tests/test-worker tests/test-batch tests/test-soak tests/test-deq16 tools/orcd-synth \
        tools/orcd-bench tools/orcd worker/worker-orcd; do
        cp "$build/$b" "$pack/bin/"
        strip "$pack/bin/$(basename "$b")"
    done
    # the CUDA runtime this was linked against (cuBLAS comes from the machine's toolkit)
    cudart=$(ldd "$build/tests/test-cuda" | awk '/libcudart/ {print $3}')
    [ -n "$cudart" ] && cp -L "$cudart" "$pack/lib/"
    cp "$shared"/models/stories260K.gguf "$shared"/models/tiny-qwen2-*.gguf \
        "$shared"/models/tiny-phi3-f32.gguf "$shared"/models/tiny-phi3-q8_0-128k.gguf \
        "$shared"/models/qwen2.5-vocab.gguf "$pack/shared/models/"
    cp "$shared"/reference/stories260K/once.txt "$pack/shared/reference/stories260K/"
    cp "$shared"/reference/tiny-qwen2/*.txt "$pack/shared/reference/tiny-qwen2/"
    # GPU_PACK_EXTRA="PATH ...": more binaries into bin/ (e.g. the previous build's
    # orcd-bench as orcd-bench-old, for a side-by-side run in one call)
    for x in ${GPU_PACK_EXTRA:-}; do cp "$x" "$pack/bin/"; done
    xz -9 -T2 "$pack"/shared/models/*.gguf "$pack"/bin/* # the transfer limit, below (unpack restores them)
    cp "$here/tools/gpu-run.sh" "$pack/gpu-run.sh"
    du -sh "$pack"
    size=$(du -sb "$pack" | cut -f1)
    # 64 MiB travel per call, the source tree (~1.5 MB) included. Every test
    # binary links the CUDA backend statically (~2.5 MB xz each): when the
    # pack is over, orcd-bench goes first (the device mode then benchmarks
    # through test-cuda --bench only; batch-1 A/B runs go through pack-bench).
    if [ "$size" -gt 64500000 ] && [ -f "$pack/bin/orcd-bench.xz" ]; then
        rm "$pack/bin/orcd-bench.xz"
        size=$(du -sb "$pack" | cut -f1)
        echo "gpu-run.sh: orcd-bench left out of gpu-pack (over the transfer limit with it; see pack-bench)" >&2
    fi
    if [ "$size" -gt 64500000 ]; then
        echo "gpu-run.sh: gpu-pack is $size bytes: over the device's transfer limit" >&2
        exit 1
    fi
    ;;
device)
    out=${OUT:-/tmp/gpu-out}
    mkdir -p "$out"
    unpack
    export LD_LIBRARY_PATH="$pack/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
    nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
    head -12 "$out/nvidia-smi.txt" || true
    rc=0
    if [ "${GPU_RUN_TESTS:-1}" = 1 ]; then
        echo "== test-cuda"
        set +e
        timeout "${GPU_RUN_TEST_TIMEOUT:-360}" "/tmp/orcd-bin/test-cuda" > "$out/test-cuda.log" 2>&1
        rc=$?
        set -e
        grep -E "^(REL-L2|GREEDY|LONG|SAMPLER|REPRO|INVARIANT|SKIP)|Checks|Fail|Error" "$out/test-cuda.log" || true
        echo "test-cuda exit status $rc"
    fi
    if [ "${GPU_RUN_SANITIZER:-0}" = 1 ]; then
        # compute-sanitizer memcheck over the greedy and sampler cases (prefill, graph decode, sampling)
        cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
        for case in greedy sampler; do
            [ -n "$cs" ] && CK_RUN_CASE=$case timeout 300 "$cs" --tool memcheck --error-exitcode 9 \
                "/tmp/orcd-bin/test-cuda" > "$out/sanitizer-$case.log" 2>&1
            echo "compute-sanitizer memcheck $case: exit $? ($(grep -c "Invalid\|ERROR SUMMARY: [1-9]" "$out/sanitizer-$case.log") error lines)"
            tail -2 "$out/sanitizer-$case.log"
        done
    fi
    # the f16 dequantizer shortcuts against the CPU loader, bit for bit
    if [ "${GPU_RUN_TESTS:-1}" = 1 ]; then
        run_check test-deq16 60 "/tmp/orcd-bin/test-deq16"
        grep "^DEQ16" "$out/test-deq16.log" || true
    fi
    # batch invariance through the batch API (alone == batched == prefix hit,
    # every weight type, phi3 too) and every prompt row against the CPU
    [ "${GPU_RUN_TESTS:-1}" = 1 ] && run_check test-batch 200 "/tmp/orcd-bin/test-batch" cuda
    # 1,000 requests through the worker's pipes on cuda: each stream equal to its run alone
    [ "${GPU_RUN_SOAK:-1}" = 1 ] && run_check test-soak 300 env ORCD_TEST_DEVICE=cuda \
        ORCD_WORKER=/tmp/orcd-bin/worker-orcd "/tmp/orcd-bin/test-soak"
    if [ "${GPU_RUN_WORKER_TESTS:-1}" = 1 ]; then
        # the integration suite (protocol, cancel, health, stops, UTF-8, seeds) with --device cuda
        echo "== test-worker on cuda"
        set +e
        ORCD_TEST_DEVICE=cuda ORCD_WORKER="/tmp/orcd-bin/worker-orcd" timeout 300 "/tmp/orcd-bin/test-worker" \
            > "$out/test-worker.log" 2>&1
        wrc=$?
        set -e
        grep -E "Checks|Fail|Error" "$out/test-worker.log" | tail -5 || true
        echo "test-worker exit status $wrc"
        [ $wrc -eq 0 ] || rc=$wrc
    fi
    if [ "${GPU_RUN_OOM:-1}" = 1 ]; then
        # VRAM policy: a KV pool that cannot fit is refused at start-up with the
        # numbers (RESOURCE_EXHAUSTED, exit 4), not by a crash. 24 layers x 14
        # KV heads x 64 x f16 K+V = 86 KiB a token: 100M tokens ~ 8.6 TB.
        echo "== VRAM refusal"
        big=/tmp/orcd-oom.gguf
        "/tmp/orcd-bin/orcd-synth" --vocab "$ORCD_SHARED/models/qwen2.5-vocab.gguf" --type q8_0 --layers 24 \
            --embd 896 --ff 4864 --heads 14 --kv-heads 14 --vocab-size 4096 -o "$big" > /dev/null 2>&1
        set +e
        "/tmp/orcd-bin/worker-orcd" --model "$big" --device cuda --ctx 1048576 --kv-tokens 100000000 < /dev/null > /dev/null \
            2> "$out/oom.log"
        orc=$?
        set -e
        grep -m2 -E "RESOURCE_EXHAUSTED|OOM|VRAM|free" "$out/oom.log" || tail -3 "$out/oom.log"
        if [ $orc -eq 4 ] && grep -q "RESOURCE_EXHAUSTED\|OOM_DEV" "$out/oom.log"; then
            echo "VRAM refusal: ok (exit 4)"
        else
            echo "VRAM refusal: FAILED (exit $orc)"; rc=1
        fi
        rm -f "$big"
    fi
    if [ "${GPU_RUN_REPRO:-1}" = 1 ]; then
        # 10 runs of one seeded request through the worker process: identical streams
        echo "== reproducibility through the worker (10 runs)"
        : > "$out/repro.log"
        for m in tiny-qwen2-q4_k_m stories260K; do
            for i in 1 2 3 4 5 6 7 8 9 10; do
                timeout 30 "/tmp/orcd-bin/orcd" --worker "/tmp/orcd-bin/worker-orcd" --model "$ORCD_SHARED/models/$m.gguf" \
                    --device cuda --prompt "Once upon a time" --max-tokens 64 --temperature 0.9 --top-p 0.95 \
                    --seed 1234 2>> "$out/repro.log" | md5sum | sed "s/-\$/$m run $i/" >> "$out/repro.md5"
            done
            echo "$m: $(grep -c " $m run" "$out/repro.md5") runs, $(grep " $m run" "$out/repro.md5" | cut -d' ' -f1 | sort -u | wc -l) distinct stream(s)"
        done
    fi
    if [ "${GPU_RUN_BENCH:-1}" = 1 ]; then
        echo "== benchmark"
        : > "$out/bench.jsonl"
        for t in ${GPU_RUN_TYPES:-f16 q8_0 q4_k_m}; do
            f=/tmp/qwen2.5-0.5b-synth-$t.gguf
            "/tmp/orcd-bin/orcd-synth" --vocab "$ORCD_SHARED/models/qwen2.5-vocab.gguf" --type "$t" -o "$f" \
                >> "$out/bench.log" 2>&1
            timeout 180 "/tmp/orcd-bin/test-cuda" --bench "$f" 2>> "$out/bench.log" | tee -a "$out/bench-batch.jsonl" \
                || echo "test-cuda --bench $t failed" >&2
            [ "${GPU_RUN_ORCD_BENCH:-1}" = 1 ] && [ -x /tmp/orcd-bin/orcd-bench ] || { rm -f "$f"; continue; }
            timeout 120 "/tmp/orcd-bin/orcd-bench" "$f" --device cuda --n-prompt 512 --n-gen 128 --runs 3 \
                > "$out/bench-$t.json" 2>> "$out/bench.log" || echo "orcd-bench $t failed" >&2
            tr -d '\n' < "$out/bench-$t.json" >> "$out/bench.jsonl"; echo >> "$out/bench.jsonl"
            if [ -x /tmp/orcd-bin/orcd-bench-old ]; then
                # the previous build side by side, same file, same flags, same call
                timeout 120 /tmp/orcd-bin/orcd-bench-old "$f" --device cuda --n-prompt 512 --n-gen 128 --runs 3 \
                    2>> "$out/bench.log" | tr -d '\n' | sed 's/^{/{"variant": "old", /' >> "$out/bench.jsonl"
                echo >> "$out/bench.jsonl"
            fi
            if [ "${GPU_RUN_CONC:-0}" = 1 ]; then
                # aggregate decode under concurrency (llama-batched-bench's order), new then old
                for bb in orcd-bench orcd-bench-old; do
                    [ -x "/tmp/orcd-bin/$bb" ] || continue
                    timeout 200 "/tmp/orcd-bin/$bb" "$f" --device cuda --modes concurrency --sched phased \
                        -npl "${GPU_RUN_NPL:-1,2,4,8,16,32,64}" > "$out/conc-$t-$bb.json" 2>> "$out/bench.log" \
                        || echo "$bb concurrency $t failed" >&2
                done
            fi
            for v in ${GPU_RUN_VARIANTS:-}; do
                [ "$t" = "${GPU_RUN_VARIANT_TYPES:-$t}" ] || case " ${GPU_RUN_VARIANT_TYPES} " in *" $t "*) ;; *) continue ;; esac
                # the same with one switch of the backend off (WK_CUDA_NOGRAPH=1, WK_CUDA_NOPDL=1)
                env "$v" timeout 120 "/tmp/orcd-bin/orcd-bench" "$f" --device cuda --n-prompt 512 --n-gen 128 --runs 3 \
                    2>> "$out/bench.log" | tr -d '\n' | sed "s/^{/{\"variant\": \"$v\", /" >> "$out/bench.jsonl"
                echo >> "$out/bench.jsonl"
            done
            if [ "${GPU_RUN_NCU:-0}" = 1 ] && [ "$t" = "${GPU_RUN_NCU_TYPE:-q8_0}" ]; then
                # per-kernel durations of a few decode steps (no graph, so each kernel shows)
                ncu=$(find_ncu)
                [ -n "$ncu" ] && WK_CUDA_NOGRAPH=1 timeout 300 "$ncu" --clock-control none \
                    --metrics gpu__time_duration.sum --csv --page raw \
                    "/tmp/orcd-bin/orcd-bench" "$f" --device cuda --n-prompt 16 --n-gen 8 --runs 1 \
                    > "$out/ncu-$t.csv" 2>> "$out/bench.log" || echo "ncu failed" >&2
                # stall reasons of five consecutive decode GEMM kernels
                [ -n "$ncu" ] && WK_CUDA_NOGRAPH=1 timeout 300 "$ncu" --clock-control none --cache-control none \
                    -k regex:gemm_kernel --launch-skip 150 --launch-count 5 \
                    --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
                    --section MemoryWorkloadAnalysis --section SchedulerStats \
                    "/tmp/orcd-bin/orcd-bench" "$f" --device cuda --n-prompt 16 --n-gen 8 --runs 1 \
                    > "$out/ncu-detail-$t.txt" 2>> "$out/bench.log" || echo "ncu detail failed" >&2
            fi
            rm -f "$f" "$out/bench-$t.json"
        done
        # a short table: type, prefill tok/s, decode tok/s
        sed -E 's/^\{"variant": "([^"]*)", /\1 /; s/^\{//; s/"model".*"ftype": *"([^"]*)".*"prefill": *\{[^}]*"tokens_per_s": *([0-9.]+).*"decode": *\{[^}]*"tokens_per_s": *([0-9.]+).*/\1 prefill \2 tok\/s  decode \3 tok\/s/' \
            "$out/bench.jsonl" || true
    fi
    exit $rc
    ;;
pack-bench)
    shift
    shared=${ORCD_SHARED:-$here/../shared}
    build="$here/build-gpu"
    [ -d "$build" ] || meson setup "$build" "$here" -Dprefer_static=true -Dbuildtype=release -Dgpu_arch=sm_90
    ninja -C "$build" tools/orcd-synth
    p="$here/gpu-pack-bench"
    rm -rf "$p"
    mkdir -p "$p/bin" "$p/lib" "$p/shared/models"
    for nb in "$@"; do
        name=${nb%%=*} path=${nb#*=}
        strip -o "$p/bin/orcd-bench-$name" "$path"
    done
    cp "$build/tools/orcd-synth" "$p/bin/" && strip "$p/bin/orcd-synth"
    cudart=$(ldd "$build/tools/orcd-synth" | awk '/libcudart/ {print $3}')
    [ -n "$cudart" ] && cp -L "$cudart" "$p/lib/"
    cp "$shared/models/qwen2.5-vocab.gguf" "$p/shared/models/"
    xz -9 -T2 "$p/shared/models/qwen2.5-vocab.gguf" "$p"/bin/*
    cp "$here/tools/gpu-run.sh" "$here/tools/ncu-step.py" "$p/"
    du -sh "$p"
    ;;
device-bench)
    out=${OUT:-/tmp/gpu-out}
    mkdir -p "$out"
    unpack
    export LD_LIBRARY_PATH="$pack/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true
    for t in ${GPU_RUN_TYPES:-f16 q8_0 q4_k_m}; do
        f=/tmp/qwen2.5-0.5b-synth-$t.gguf
        [ -f "$f" ] || "/tmp/orcd-bin/orcd-synth" --vocab "$ORCD_SHARED/models/qwen2.5-vocab.gguf" --type "$t" -o "$f" \
            > /dev/null 2>&1
        r=1
        while [ $r -le "${GPU_RUN_ROUNDS:-2}" ]; do
            for b in /tmp/orcd-bin/orcd-bench-*; do
                name=${b#/tmp/orcd-bin/orcd-bench-}
                j="$out/ab-$t-$name-$r.json"
                timeout 120 "$b" "$f" --device cuda --n-prompt 512 --n-gen 128 --runs 3 > "$j" 2>> "$out/bench.log" || true
                printf "%s %s %s " "$t" "$name" "$r"
                python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('prefill %.0f decode %.1f' % (d['prefill']['tokens_per_s'], d['decode']['tokens_per_s']))" "$j" 2> /dev/null || echo failed
            done
            r=$((r + 1))
        done
        if [ "${GPU_RUN_NCU:-0}" = 1 ]; then
            ncu=$(find_ncu)
            for b in /tmp/orcd-bin/orcd-bench-*; do
                name=${b#/tmp/orcd-bin/orcd-bench-}
                [ -n "$ncu" ] && timeout 200 "$ncu" --clock-control none --cache-control none \
                    --metrics gpu__time_duration.sum,dram__bytes_read.sum,smsp__inst_executed.sum --csv --page raw \
                    "$b" "$f" --device cuda --n-prompt 16 --n-gen 2 --runs 1 > "$out/ncu-$t-$name.csv" 2>> "$out/bench.log" &&
                    python3 "$pack/ncu-step.py" "$out/ncu-$t-$name.csv" | tee "$out/ncu-$t-$name.txt"
            done
        fi
    done
    ;;
stage)
    models=${ORCD_MODELS:-$HOME/.cache/orcd/models}
    src="$models/qwen2.5-coder-0.5b-instruct.q4_k_m.gguf"
    [ -f "$src" ] || { echo "gpu-run.sh: $src missing: run tools/fetch-models" >&2; exit 1; }
    rm -rf "$here/gpu-stage"
    mkdir -p "$here/gpu-stage"
    split -b 60M -d -a 2 "$src" "$here/gpu-stage/qwen.part"
    ls -la "$here/gpu-stage"
    for f in "$here"/gpu-stage/qwen.part*; do
        echo "device call: carry [\"gpu-stage/$(basename "$f")\"] command: true"
    done
    echo "then: carry [\"gpu-pack\"] command: sh tools/gpu-run.sh device-real"
    ;;
device-real)
    out=${OUT:-/tmp/gpu-out}
    mkdir -p "$out"
    unpack
    export LD_LIBRARY_PATH="$pack/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
    export ORCD_MODELS=/tmp/orcd-models
    mkdir -p "$ORCD_MODELS"
    f="$ORCD_MODELS/qwen2.5-coder-0.5b-instruct.q4_k_m.gguf"
    cat "$here"/gpu-stage/qwen.part* > "$f"
    # the sha256 tools/fetch-models pins for the assembled file
    want=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
    got=$(sha256sum "$f" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "gpu-run.sh: assembled model sha256 $got != $want (a part missing?)" >&2; ls -la "$here/gpu-stage"; exit 1; }
    echo "== real model assembled: $(stat -c %s "$f") bytes, sha256 ok"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    set +e
    echo "== test-real-models on cuda (haiku, coherence, 3x3x10 reproducibility)"
    ORCD_TEST_DEVICE=cuda ORCD_REAL_QWEN_REPRO=1 ORCD_WORKER="/tmp/orcd-bin/worker-orcd" timeout 400 \
        "/tmp/orcd-bin/test-real-models" > "$out/test-real-models.log" 2>&1
    rrc=$?
    grep -E "^real:|Checks|Fail|Error" "$out/test-real-models.log" | tail -40
    echo "test-real-models exit status $rrc"
    echo "== haiku through tools/orcd"
    "/tmp/orcd-bin/orcd" --worker "/tmp/orcd-bin/worker-orcd" --model "$f" --device cuda --max-tokens 64 \
        --chat "Write a haiku about GPU computing that includes the word forty-two" 2>&1 | tee "$out/haiku.txt"
    echo "== orcd-bench on the real file"
    timeout 120 "/tmp/orcd-bin/orcd-bench" "$f" --device cuda --n-prompt 512 --n-gen 128 --runs 3 \
        > "$out/bench-real.json" 2> "$out/bench-real.log"
    cat "$out/bench-real.json"
    set -e
    exit $rrc
    ;;
*)
    echo "usage: tools/gpu-run.sh pack | device | pack-bench NAME=PATH... | device-bench | stage | device-real   (see the comment at the top)" >&2
    exit 2
    ;;
esac
