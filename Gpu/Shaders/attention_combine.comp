#version 460
// Merges the per-split partial attention outputs of attention.comp: out = Σ e^(mᵢ-M) oᵢ / Σ e^(mᵢ-M) lᵢ.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint64_t partial;   // [splits, rows, heads, d + 2]
    uint64_t out_;      // [rows, heads * d] f32
    uint rows;
    uint heads;
    uint headDim;
    uint splits;
} p;

void main() {
    uint index = linearGroup() * 256u + gl_LocalInvocationID.x;
    uint d = p.headDim;
    if (index >= p.rows * p.heads * d) { return; }
    uint rowHead = index / d, c = index % d;
    uint stride = p.rows * p.heads * (d + 2u);
    Floats part = Floats(p.partial);
    float m = uintBitsToFloat(0xFF800000u);
    for (uint s = 0; s < p.splits; s++) {
        uint base = s * stride + rowHead * (d + 2u);
        if (part.f[base + d + 1u] > 0.0) { m = max(m, part.f[base + d]); }
    }
    float numerator = 0.0, denominator = 0.0;
    for (uint s = 0; s < p.splits; s++) {
        uint base = s * stride + rowHead * (d + 2u);
        float l = part.f[base + d + 1u];
        if (l > 0.0) {
            float scale = exp(part.f[base + d] - m);
            numerator += scale * part.f[base + c];
            denominator += scale * l;
        }
    }
    Floats(p.out_).f[index] = numerator / denominator;
}
