#version 460
// y = x / sqrt(mean(x²) + eps) * weight, one workgroup per row (HF Qwen2RMSNorm: scale first, then weight).
// y may be x: each invocation reads and writes only its own elements.
#include "common.glsl"
layout(local_size_x = 256) in;
#include "reduce.glsl"
layout(push_constant) uniform Push {
    uint64_t x;       // [rows, cols] f32
    uint64_t weight;  // [cols] f32
    uint64_t y;       // [rows, cols] f32
    uint rows;
    uint cols;
    float eps;
} p;

void main() {
    uint row = linearGroup();
    if (row >= p.rows) { return; }
    Floats x = Floats(p.x), w = Floats(p.weight), y = Floats(p.y);
    uint base = row * p.cols;
    float sum = 0.0;
    for (uint c = gl_LocalInvocationID.x; c < p.cols; c += 256u) {
        float v = x.f[base + c];
        sum += v * v;
    }
    float scale = 1.0 / sqrt(workgroupSum(sum) / float(p.cols) + p.eps);
    for (uint c = gl_LocalInvocationID.x; c < p.cols; c += 256u) {
        y.f[base + c] = x.f[base + c] * scale * w.f[c];
    }
}
