#!/usr/bin/env bash
# Compiles Gpu/Shaders/*.comp to SPIR-V with glslc (Debian: apt-get install glslc). The .spv files are
# committed, so a clone builds without glslc; CI runs this with --check and fails when a committed .spv
# differs from its source's compile. Shaders that read weights are compiled once per stored type.
# gemm_coop.comp uses GL_KHR_cooperative_matrix, which Debian 12's glslc (shaderc 2023.2) does not know: it is compiled
# by $GLSLC_COOPERATIVE_MATRIX, a newer glslc (tools/vulkan-sysroot.sh DIR gives one as DIR/bin/glslc), else by glslc.
set -euo pipefail
cd "$(dirname "$0")/../Gpu/Shaders"
check=0
[[ "${1:-}" == "--check" ]] && check=1
command -v glslc > /dev/null || { echo "compile-shaders: glslc not found (apt-get install glslc)" >&2; exit 2; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
compile() {  # name source [defines...]
  local name="$1" source="$2"
  shift 2
  "${GLSLC:-glslc}" --target-env=vulkan1.2 -O -Werror "$@" -o "$out/$name.spv" "$source"
}

for type in bf16 f16 f32 q8_0 q4_0 q4_1 q5_1 q2_k q3_k iq4_xs q4_k q5_k q6_k; do
  define="-DWEIGHT_${type^^}"
  compile "embed_$type" embed.comp "$define"
  compile "matvec_$type" matvec.comp "$define"
  compile "gemm_$type" gemm.comp "$define"
done
for shader in rms_norm rope kv_store attention attention_combine swiglu add multiply gather_rows layer_norm gelu segment_attention split_rows; do
  compile "$shader" "$shader.comp"
done
for type in f16 bf16; do  # a KV cache of halves
  compile "kv_store_$type" kv_store.comp "-DKV_${type^^}"
  compile "attention_$type" attention.comp "-DKV_${type^^}"
done
for type in q8_0 q4_0; do  # a quantized cache: its own store (rotation, blocks), attention's reads
  compile "kv_store_$type" kv_store_quantized.comp "-DKV_${type^^}"
  compile "attention_$type" attention.comp "-DKV_${type^^}"
done
coop="${GLSLC_COOPERATIVE_MATRIX:-glslc}"
for type in bf16 f16 f32 q8_0 q4_0 q4_1 q5_1 q2_k q3_k iq4_xs q4_k q5_k q6_k; do
  for tile in 16 8; do
    GLSLC="$coop" compile "gemm_coop_${type}_$tile" gemm_coop.comp "-DWEIGHT_${type^^}" "-DTILE=${tile}u" 2> "$out/coop.log" || {
      cat "$out/coop.log" >&2
      echo "compile-shaders: gemm_coop.comp needs a glslc that knows GL_KHR_cooperative_matrix (newer than Debian 12's shaderc 2023.2; Debian 13's 2025.2 is one):" \
        "run tools/vulkan-sysroot.sh DIR and set GLSLC_COOPERATIVE_MATRIX=DIR/bin/glslc" >&2
      exit 2
    }
  done
done

status=0
for spv in "$out"/*.spv; do
  name="$(basename "$spv")"
  if [[ "$check" == 1 ]]; then
    if ! cmp -s "$spv" "$name"; then
      echo "compile-shaders: Gpu/Shaders/$name differs from the compile of its source (run tools/compile-shaders.sh and commit)" >&2
      status=1
    fi
  else
    cp "$spv" "$name"
  fi
done
if [[ "$check" == 1 ]]; then
  for spv in *.spv; do
    [[ -e "$out/$spv" ]] || { echo "compile-shaders: Gpu/Shaders/$spv has no source" >&2; status=1; }
  done
fi
exit $status
