#version 460
// y = (x - mean) / sqrt(var + eps) * weight + bias, one workgroup per row (torch.nn.LayerNorm: biased variance,
// taken around the mean in a second pass). Values are taken relative to the row's first one, so a row far from
// zero keeps the digits an f32 mean near it would round away.
// Scalar reference: Cpu/Kernels/LayerNormKernel.cs.
#include "common.glsl"
layout(local_size_x = 256) in;
#include "reduce.glsl"
layout(push_constant) uniform Push {
    uint64_t x;       // [rows, cols] f32
    uint64_t weight;  // [cols] f32
    uint64_t bias;    // [cols] f32
    uint64_t y;       // [rows, cols] f32
    uint rows;
    uint cols;
    float eps;
} p;

void main() {
    uint row = linearGroup();
    if (row >= p.rows) { return; }
    Floats x = Floats(p.x), w = Floats(p.weight), b = Floats(p.bias), y = Floats(p.y);
    uint base = row * p.cols;
    float n = float(p.cols);
    float shift = x.f[base];
    float sum = 0.0;
    for (uint c = gl_LocalInvocationID.x; c < p.cols; c += 256u) { sum += x.f[base + c] - shift; }
    float offset = workgroupSum(sum) / n;   // mean - shift
    float squares = 0.0;
    for (uint c = gl_LocalInvocationID.x; c < p.cols; c += 256u) {
        float d = (x.f[base + c] - shift) - offset;
        squares += d * d;
    }
    float scale = 1.0 / sqrt(workgroupSum(squares) / n + p.eps);
    for (uint c = gl_LocalInvocationID.x; c < p.cols; c += 256u) {
        y.f[base + c] = ((x.f[base + c] - shift) - offset) * scale * w.f[c] + b.f[c];
    }
}
