#version 460
// Each activation row as the sum of two f16 rows, for gemm_coop.comp's f16 matrix units: the row is scaled by the power
// of two s that puts its largest |x| in [2^14, 2^15), hi = x s cut to f16's 11 significant bits, lo = f16(x s - hi).
// hi + lo hold 22 of x's 24 significant bits; the scale keeps lo clear of f16's subnormals (for all but the row's
// smallest values, whose products are below f32's resolution of the sum anyway) and the largest |x| clear of f16's
// 65504. Writes 1 / s for the GEMM to undo. One workgroup per row; cols is even (the GEMM reads hi and lo in pairs).
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"
layout(local_size_x = 256) in;
#include "reduce.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) writeonly buffer PairsOut { uint u[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) writeonly buffer FloatsOut { float f[]; };
layout(push_constant) uniform Push {
    uint64_t x;        // [rows, cols] f32
    uint64_t hi;       // [rows, cols] f16
    uint64_t lo;       // [rows, cols] f16
    uint64_t unscale;  // [rows] f32: 1 / s
    uint rows;
    uint cols;
} p;

void main() {
    uint row = linearGroup();
    if (row >= p.rows) { return; }
    Floats x = Floats(p.x);
    uint base = row * p.cols;
    float largest = 0.0;
    for (uint c = gl_LocalInvocationID.x; c < p.cols; c += 256u) { largest = max(largest, abs(x.f[base + c])); }
    largest = workgroupMax(largest);
    // largest = f 2^e with f in [0.5, 1): s = 2^(15 - e). A zero row keeps s = 1; the clamp keeps s and 1 / s finite.
    int e = 0;
    frexp(largest, e);
    int shift = largest > 0.0 ? clamp(15 - e, -100, 100) : 0;
    float s = ldexp(1.0, shift);
    for (uint pair = gl_LocalInvocationID.x; pair < p.cols / 2u; pair += 256u) {
        vec2 v = vec2(x.f[base + 2u * pair], x.f[base + 2u * pair + 1u]) * s;
        // hi keeps v's top 11 significant bits by masking its f32 bits, so it is an f16 value and v - hi is exact. Not
        // f16(v) then v - f32(f16(v)): a compiler may fold that round trip to v (lavapipe does) and lo to zero.
        vec2 hiBits = uintBitsToFloat(floatBitsToUint(v) & 0xFFFFE000u);
        f16vec2 h = f16vec2(hiBits);
        f16vec2 l = f16vec2(v - hiBits);
        PairsOut(p.hi).u[base / 2u + pair] = packFloat2x16(h);
        PairsOut(p.lo).u[base / 2u + pair] = packFloat2x16(l);
    }
    if (gl_LocalInvocationID.x == 0u) { FloatsOut(p.unscale).f[row] = ldexp(1.0, -shift); }
}
