#version 460
// Causal scaled dot-product attention over the cache, one workgroup per (row, query head), with the
// online ("flash") softmax: positions are read in tiles of GROUP, each tile's scores rescale a running max,
// sum and output, so no score row is ever stored whole and any context length fits. A row attends to
// positions 0..position of its own slot (the causal mask is that range); GQA: query head h reads kv head
// h / groupSize. Long contexts split across `splits` workgroups per (row, head), each over a contiguous
// range of positions, writing its unnormalized output, max and sum for attention_combine.comp.
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint GROUP = 64;
#include "reduce.glsl"
const uint MAX_HEAD_DIM = 256;
const uint PER_INVOCATION = (MAX_HEAD_DIM + GROUP - 1) / GROUP;

layout(push_constant) uniform Push {
    uint64_t q;               // [rows, heads * d] f32
    uint64_t keys;            // [slots, capacity, kvDim] f32: this layer's cache
    uint64_t values;
    uint64_t slotsPositions;  // [rows] slots, then [rows] positions, int
    uint64_t out_;            // [rows, heads * d] f32, or with splits > 1 [splits, rows, heads, d + 2]
    uint rows;
    uint heads;
    uint groupSize;
    uint headDim;
    uint capacity;
    uint splits;
    uint splitLength;         // positions per split
    float scale;
} p;

shared float qs[MAX_HEAD_DIM];
shared float probs[GROUP];

void main() {
    uint g = linearGroup();
    uint split = g % p.splits, rowHead = g / p.splits;
    uint row = rowHead / p.heads, head = rowHead % p.heads;
    if (row >= p.rows) { return; }
    uint t = gl_LocalInvocationID.x, d = p.headDim;
    uint kvDim = (p.heads / p.groupSize) * d;
    uint slot = uint(Ints(p.slotsPositions).i[row]);
    uint length_ = uint(Ints(p.slotsPositions).i[p.rows + row]) + 1u;
    uint begin = split * p.splitLength, end = min(length_, begin + p.splitLength);
    uint qBase = row * p.heads * d + head * d;
    uint kvBase = slot * p.capacity * kvDim + (head / p.groupSize) * d;
    for (uint i = t; i < d; i += GROUP) { qs[i] = Floats(p.q).f[qBase + i]; }
    barrier();

    float runningMax = uintBitsToFloat(0xFF800000u), runningSum = 0.0;
    float o[PER_INVOCATION];
    for (uint i = 0; i < PER_INVOCATION; i++) { o[i] = 0.0; }
    Floats keys = Floats(p.keys), values = Floats(p.values);
    for (uint tile = begin; tile < end; tile += GROUP) {
        uint j = tile + t;
        float score = uintBitsToFloat(0xFF800000u);
        if (j < end) {
            uint at = kvBase + j * kvDim;
            float s = 0.0;
            for (uint i = 0; i < d; i++) { s += qs[i] * keys.f[at + i]; }
            score = s * p.scale;
        }
        float newMax = max(runningMax, workgroupMax(score));
        float alpha = exp(runningMax - newMax);    // 0 on the first tile (exp(-inf))
        float prob = j < end ? exp(score - newMax) : 0.0;
        probs[t] = prob;
        runningSum = runningSum * alpha + workgroupSum(prob);   // its barriers also publish probs
        runningMax = newMax;
        uint count = min(GROUP, end - tile);
        for (uint i = 0; i < PER_INVOCATION; i++) {
            uint c = t + i * GROUP;
            if (c < d) {
                float acc = o[i] * alpha;
                for (uint jj = 0; jj < count; jj++) { acc += probs[jj] * values.f[kvBase + (tile + jj) * kvDim + c]; }
                o[i] = acc;
            }
        }
        barrier();
    }

    if (p.splits == 1u) {
        for (uint i = 0; i < PER_INVOCATION; i++) {
            uint c = t + i * GROUP;
            if (c < d) { Floats(p.out_).f[qBase + c] = o[i] / runningSum; }
        }
    } else {
        // Partial result: d unnormalized outputs, then the max and the sum (an empty split has sum 0).
        uint base = ((split * p.rows + row) * p.heads + head) * (d + 2u);
        for (uint i = 0; i < PER_INVOCATION; i++) {
            uint c = t + i * GROUP;
            if (c < d) { Floats(p.out_).f[base + c] = o[i]; }
        }
        if (t == 0u) {
            Floats(p.out_).f[base + d] = runningMax;
            Floats(p.out_).f[base + d + 1u] = runningSum;
        }
    }
}
