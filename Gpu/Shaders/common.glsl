// Shared by every QwenSharp shader: buffers arrive as 64-bit device addresses in the push constants
// (GL_EXT_buffer_reference), so no shader declares descriptor bindings and no buffer is capped by
// maxStorageBufferRange; reductions go through subgroups, then shared memory across subgroups, so they are
// correct for any subgroup size (8 on lavapipe, 32 on NVIDIA, 64 on AMD).
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(buffer_reference, std430, buffer_reference_align = 4) buffer Floats { float f[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer Float4s { vec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer Uints { uint u[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer Uint4s { uvec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer Ints { int i[]; };

// Workgroups beyond maxComputeWorkGroupCount[0] (65535 on many devices) spill into y: the host splits a
// 1-D grid into x * y and every shader reads its linear group index here.
uint linearGroup() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// Weights stay in their stored type: bf16 is the top half of an f32, f16 is IEEE half, f32 is itself.
#if defined(WEIGHT_BF16)
float weightAt(uint64_t w, uint i) {
    uint word = Uints(w).u[i >> 1];
    return uintBitsToFloat((i & 1u) == 0u ? word << 16 : word & 0xFFFF0000u);
}
#elif defined(WEIGHT_F16)
float weightAt(uint64_t w, uint i) {
    vec2 pair = unpackHalf2x16(Uints(w).u[i >> 1]);
    return (i & 1u) == 0u ? pair.x : pair.y;
}
#elif defined(WEIGHT_F32)
float weightAt(uint64_t w, uint i) { return uintBitsToFloat(Uints(w).u[i]); }
#elif defined(WEIGHT_Q8_0) || defined(WEIGHT_Q4_0) || defined(WEIGHT_Q4_K) || defined(WEIGHT_Q5_K) || defined(WEIGHT_Q6_K)
// Block-quantized weights (GGUF's blocks as stored, each value widened as ggml's dequantize_row_* defines it). Blocks
// are only 2-byte aligned, so bytes are read out of the 32-bit words that hold them (buffers are padded to 16 bytes).
#define WEIGHT_BLOCKS 1
uint byteAt(uint64_t w, uint offset) { return (Uints(w).u[offset >> 2] >> ((offset & 3u) * 8u)) & 0xFFu; }
float halfAt(uint64_t w, uint offset) { return unpackHalf2x16(byteAt(w, offset) | (byteAt(w, offset + 1u) << 8)).x; }
#if defined(WEIGHT_Q8_0)
// Q8_0: 34 bytes, d then 32 int8 q; value = d * q.
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 5) * 34u;
    int q = int(byteAt(w, base + 2u + (i & 31u)) << 24) >> 24;
    return halfAt(w, base) * float(q);
}
#elif defined(WEIGHT_Q4_0)
// Q4_0: 18 bytes, d then 16 bytes of nibbles: value j < 16 is byte j's low nibble, value j >= 16 byte j - 16's high
// nibble; value = d * (q - 8).
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 5) * 18u, j = i & 31u;
    uint q = (byteAt(w, base + 2u + (j & 15u)) >> ((j >> 4) * 4u)) & 0xFu;
    return halfAt(w, base) * float(int(q) - 8);
}
#elif defined(WEIGHT_Q4_K) || defined(WEIGHT_Q5_K)
// Q4_K (144 bytes a super-block of 256) and Q5_K (176): d, dmin (f16), 12 bytes of 6-bit scales and mins, (Q5_K: qh[32],)
// qs[128]. Value j is in sub-block s = j / 32 (its scale and min as ggml's get_scale_min_k4); its code is the low (s even)
// or high (s odd) nibble of qs[32 (s / 2) + j % 32], plus 16 for Q5_K when bit s of qh[j % 32] is set;
// value = d × scale × q − dmin × min.
float weightAt(uint64_t w, uint i) {
#if defined(WEIGHT_Q4_K)
    const uint BYTES = 144u, CODES = 16u;
#else
    const uint BYTES = 176u, CODES = 48u;
#endif
    uint base = (i >> 8) * BYTES, j = i & 255u, s = j >> 5, l = j & 31u;
    uint sc, m;
    if (s < 4u) {
        sc = byteAt(w, base + 4u + s) & 63u;
        m = byteAt(w, base + 8u + s) & 63u;
    } else {
        uint packed = byteAt(w, base + 8u + s);
        sc = (packed & 0xFu) | ((byteAt(w, base + s) >> 6) << 4);
        m = (packed >> 4) | ((byteAt(w, base + 4u + s) >> 6) << 4);
    }
    uint q = (byteAt(w, base + CODES + 32u * (s >> 1) + l) >> ((s & 1u) * 4u)) & 0xFu;
#if defined(WEIGHT_Q5_K)
    q |= ((byteAt(w, base + 16u + l) >> s) & 1u) << 4;
#endif
    return halfAt(w, base) * float(sc) * float(q) - halfAt(w, base + 2u) * float(m);
}
#elif defined(WEIGHT_Q6_K)
// Q6_K (210 bytes a super-block of 256): ql[128], qh[64], int8 scales[16], d (f16). Value j: half n = j / 128, quarter
// t = (j % 128) / 32, l = j % 32; its low 4 bits are the low (t < 2) or high nibble of ql[64n + 32 (t % 2) + l], its top
// 2 bits bits 2t, 2t + 1 of qh[32n + l]; value = d × scales[j / 16] × (q − 32).
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 8) * 210u, j = i & 255u, n = j >> 7, t = (j & 127u) >> 5, l = j & 31u;
    uint low = (byteAt(w, base + 64u * n + 32u * (t & 1u) + l) >> ((t >> 1) * 4u)) & 0xFu;
    uint high = (byteAt(w, base + 128u + 32u * n + l) >> (2u * t)) & 3u;
    int scale = int(byteAt(w, base + 192u + (j >> 4)) << 24) >> 24;
    return halfAt(w, base + 208u) * float(scale) * float(int(low | (high << 4)) - 32);
}
#endif
#endif
