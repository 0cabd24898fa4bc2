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
#elif defined(WEIGHT_Q8_0) || defined(WEIGHT_Q4_0)
// Block-quantized weights: blocks of 32 values, an f16 scale d first. Blocks are only 2-byte aligned, so bytes are
// read out of the 32-bit words that hold them (buffers are padded to 16 bytes).
uint byteAt(uint64_t w, uint offset) { return (Uints(w).u[offset >> 2] >> ((offset & 3u) * 8u)) & 0xFFu; }
#if defined(WEIGHT_Q8_0)
// Q8_0: 34 bytes, d then 32 int8 q; value = d * q.
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 5) * 34u;
    float d = unpackHalf2x16(byteAt(w, base) | (byteAt(w, base + 1u) << 8)).x;
    int q = int(byteAt(w, base + 2u + (i & 31u)) << 24) >> 24;
    return d * float(q);
}
#else
// Q4_0: 18 bytes, d then 16 bytes of nibbles: value j < 16 is byte j's low nibble, value j >= 16 byte j - 16's high
// nibble; value = d * (q - 8), as ggml's dequantize_row_q4_0.
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 5) * 18u, j = i & 31u;
    float d = unpackHalf2x16(byteAt(w, base) | (byteAt(w, base + 1u) << 8)).x;
    uint q = (byteAt(w, base + 2u + (j & 15u)) >> ((j >> 4) * 4u)) & 0xFu;
    return d * float(int(q) - 8);
}
#endif
#endif
