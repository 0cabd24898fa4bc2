#version 460
// Bidirectional attention within segments (the vision tower: each picture's patches attend to each other), one
// workgroup per (row, head). Keys go in tiles of 256: one score per invocation, the tile's max and sum across
// the workgroup, and the running output rescaled as the max grows (online softmax), so any segment length runs
// in fixed shared memory. Query heads share key-value heads in groups (GQA: the language model's bidirectional
// embeddings). Scalar reference: Cpu/Jobs/SegmentAttentionJob.cs.
#include "common.glsl"
layout(local_size_x = 256) in;
#include "reduce.glsl"
layout(push_constant) uniform Push {
    uint64_t q;        // [rows, heads * d] f32
    uint64_t k;        // [rows, kvHeads * d] f32
    uint64_t v;        // [rows, kvHeads * d] f32
    uint64_t bounds;   // [rows] (first row, end row) of each row's segment, uint pairs
    uint64_t out_;     // [rows, heads * d] f32
    uint rows;
    uint heads;
    uint headDim;
    float scale;
    uint kvHeads;
} p;

shared float query[256];
shared float weights[256];

void main() {
    uint group = linearGroup();
    if (group >= p.rows * p.heads) { return; }
    uint row = group / p.heads, head = group % p.heads, d = p.headDim, width = p.heads * d, t = gl_LocalInvocationID.x;
    uint kvWidth = p.kvHeads * d, kvOffset = head / (p.heads / p.kvHeads) * d;
    uint first = Uints(p.bounds).u[2u * row], end = Uints(p.bounds).u[2u * row + 1u];
    Floats q = Floats(p.q), k = Floats(p.k), v = Floats(p.v);
    if (t < d) { query[t] = q.f[row * width + head * d + t]; }
    barrier();

    float runningMax = -1.0 / 0.0, runningSum = 0.0, acc = 0.0;
    for (uint tile = first; tile < end; tile += 256u) {
        uint j = tile + t;
        float score = -1.0 / 0.0;
        if (j < end) {
            uint at = j * kvWidth + kvOffset;
            float s = 0.0;
            for (uint i = 0u; i < d; i++) { s += query[i] * k.f[at + i]; }
            score = s * p.scale;
        }
        float newMax = max(runningMax, workgroupMax(score));
        float w = j < end ? exp(score - newMax) : 0.0;
        weights[t] = w;
        float correction = exp(runningMax - newMax);
        runningSum = runningSum * correction + workgroupSum(w);
        barrier();
        if (t < d) {
            uint count = min(256u, end - tile);
            float tileAcc = 0.0;
            for (uint jj = 0u; jj < count; jj++) { tileAcc += weights[jj] * v.f[(tile + jj) * kvWidth + kvOffset + t]; }
            acc = acc * correction + tileAcc;
        }
        runningMax = newMax;
        barrier();
    }

    if (t < d) { Floats(p.out_).f[row * width + head * d + t] = acc / runningSum; }
}
