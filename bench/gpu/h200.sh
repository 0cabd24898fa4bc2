#!/usr/bin/env bash
# One call on a lent NVIDIA machine (see README.md here): correctness against the fixtures' references, then
# QwenSharp --device gpu and the PyTorch peer, interleaved, three rounds; everything lands in $OUT (7 files, under
# the tool's limit of 8).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
q=out/qwensharp
export QWENSHARP_NO_AVX512=${QWENSHARP_NO_AVX512:-}
{ nvidia-smi; $q devices; } 2>&1 | tee "$OUT/devices.txt"

# Correctness on the GPU: greedy ids of every fixture against its float64 reference.
python3 - "$q" > "$OUT/check.txt" 2>&1 <<'PY'
import json, subprocess, sys
q = sys.argv[1]
ok = True
for fixture in ["tiny-qwen2", "tiny-qwen2-f16-sharded", "stories260K-qwen2-bf16"]:
    ref = json.load(open(f"tests/fixtures/{fixture}/reference.json"))
    args = [q, "generate", "--model", f"tests/fixtures/{fixture}", "--prompt-ids", ",".join(map(str, ref["prompt_ids"])),
            "--greedy", "--ignore-eos", "--max-new-tokens", str(len(ref["greedy_new_ids"])), "--json", "--device", "gpu"]
    run = subprocess.run(args, capture_output=True, text=True)
    ids = json.loads(run.stdout)["sequences"][0]["ids"] if run.returncode == 0 else None
    same = ids == ref["greedy_new_ids"]
    ok &= same
    print(fixture, "ok" if same else f"DIFFERENT: {ids} vs {ref['greedy_new_ids']} {run.stderr.strip()}")
print("all ok" if ok else "FAILED")
PY
cat "$OUT/check.txt"

# Speed: interleaved rounds of ours and the peer; the medians are taken when the table is written.
for round in 1 2 3; do
  for shape in 0.5b 7b; do
    config=tests/fixtures/qwen2.5-0.5b-instruct/config.json
    [[ "$shape" == 7b ]] && config=bench/configs/qwen2.5-7b/config.json
    timeout 120 $q bench --config "$config" --random-weights --dtype bf16 --device gpu --prompt-tokens 512 --new-tokens 128 --json \
      2>> "$OUT/qwensharp.err" | sed "s/^{/{\"shape\":\"$shape\",\"round\":$round,/" | tee -a "$OUT/qwensharp.jsonl"
  done
  if [[ "$round" != 2 ]]; then
    compile=""
    [[ "$round" == 1 ]] && compile="0.5b,7b"
    timeout 200 python3 bench/gpu/gpu_anchor_torch.py --shapes 0.5b,7b --compile "$compile" --out "$OUT/torch-$round.json" > /dev/null 2>> "$OUT/torch.err"
    tail -c 2000 "$OUT/torch-$round.json"
  fi
done

# Prefill without the matrix units (QWENSHARP_MATRIX_UNITS=off: the f32 tiled GEMM), to show what gemm_coop.comp gives.
for shape in 0.5b 7b; do
  config=tests/fixtures/qwen2.5-0.5b-instruct/config.json
  [[ "$shape" == 7b ]] && config=bench/configs/qwen2.5-7b/config.json
  QWENSHARP_MATRIX_UNITS=off timeout 120 $q bench --config "$config" --random-weights --dtype bf16 --device gpu --prompt-tokens 512 --new-tokens 16 --json \
    2>> "$OUT/qwensharp.err" | sed "s/^{/{\"shape\":\"$shape-no-matrix-units\",\"round\":1,/" | tee -a "$OUT/qwensharp.jsonl"
done

# Quantized weights as stored on the device (the block-wise matvec and GEMM shaders): the 0.5B shape, quantized at load.
for type in q4_0 q8_0; do
  timeout 60 $q bench --config tests/fixtures/qwen2.5-0.5b-instruct/config.json --random-weights --quantize $type --device gpu \
    --prompt-tokens 512 --new-tokens 128 --json 2>> "$OUT/qwensharp.err" | sed "s/^{/{\"shape\":\"0.5b-$type\",\"round\":1,/" | tee -a "$OUT/qwensharp.jsonl"
done

# 64 sequences a step, greedy and sampled (transformers' defaults: temperature 1, top-k 50): the step's token choices run
# on the backend's host threads (VulkanBackendOptions.HostThreads), a vocabulary's scan each; what the host's part of a
# batched step costs against the device's.
for mode in greedy sample; do
  flag=""; [[ "$mode" == sample ]] && flag=--sample
  timeout 60 $q bench --config tests/fixtures/qwen2.5-0.5b-instruct/config.json --random-weights --dtype bf16 --device gpu --batch 64 $flag \
    --prompt-tokens 64 --new-tokens 32 --json 2>> "$OUT/qwensharp.err" | sed "s/^{/{\"shape\":\"0.5b-batch64-$mode\",\"round\":1,/" | tee -a "$OUT/qwensharp.jsonl"
done

# The KV cache in f32, f16, bf16, q8_0 and q4_0 after a long prompt (kv_store/attention compiled for halves,
# kv_store_quantized and attention for blocks): whether fewer bytes for attention to read pay on a GPU, as they do not on
# the CPU (bench/results/.../kv-cache-type-2026-12-04.md).
for kv in f32 f16 bf16 q8_0 q4_0; do
  timeout 120 $q bench --config bench/configs/qwen2.5-7b/config.json --random-weights --dtype bf16 --device gpu --prompt-tokens 8192 \
    --new-tokens 64 --kv-cache-type $kv --json 2>> "$OUT/qwensharp.err" | sed "s/^{/{\"shape\":\"7b-kv-$kv\",\"round\":1,/" | tee -a "$OUT/qwensharp.jsonl"
done

# Partial offload (--gpu-layers): the 1.5B shape's last 14 of 28 layers on the GPU (the LM head on the CPU), and all 28 with
# the LM head (29): what a step's crossings and the CPU's part cost against the whole model on the device. Last, and short:
# the device time is tight.
for layers in 14 29; do
  timeout 60 $q bench --config bench/configs/qwen2.5-1.5b/config.json --random-weights --dtype bf16 --gpu-layers $layers --prompt-tokens 256 \
    --new-tokens 32 --json 2>> "$OUT/qwensharp.err" | sed "s/^{/{\"shape\":\"1.5b-gpu-layers-$layers\",\"round\":1,/" | tee -a "$OUT/qwensharp.jsonl"
done
