#version 460
// Causal scaled dot-product attention over the cache with the online ("flash") softmax: positions are read in tiles of
// GROUP, each tile's scores rescale a running max, sum and output, so no score row is ever stored whole and any context
// length fits. A row attends to positions 0..position of its own slot (the causal mask is that range).
// GQA: one workgroup takes a block of query heads that share a kv head (all of them, up to MAX_BLOCK: Qwen2.5's 7), so
// each key and value it reads serves every head of the block instead of being read once per head. Within a tile,
// invocation t scores position t for every head of the block; invocation h < heads keeps head h's running max and sum;
// invocation t owns output dimensions t, t + GROUP, ... of every head.
// Long contexts split across `splits` workgroups per (row, block), each over a contiguous range of positions, writing
// its unnormalized outputs, maxima and sums for attention_combine.comp.
// With KV_Q8_0 or KV_Q4_0 the cache is quantized (common.glsl): rotated heads (keyBlock, valueBlock non-zero) take the
// queries rotated as the keys were, and give outputs rotated back as the values were (KvCacheRotation), both in shared
// memory. A split's unnormalized outputs rotate as well: attention_combine.comp's weighted sum of them is linear.
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint GROUP = 64;
const uint MAX_HEAD_DIM = 256;
const uint MAX_BLOCK = 8;
const uint PER_INVOCATION = (MAX_HEAD_DIM + GROUP - 1) / GROUP;
#define NEGATIVE_INFINITY uintBitsToFloat(0xFF800000u)

layout(push_constant) uniform Push {
    uint64_t q;               // [rows, heads * d] f32
    uint64_t keys;            // [slots, capacity, kvDim] f32 (f16 or bf16 with KV_F16 or KV_BF16; KV_Q8_0 or KV_Q4_0: rows of rowBytes): this layer's cache
    uint64_t values;
    uint64_t slotsPositions;  // [rows] slots, then [rows] positions, int
    uint64_t out_;            // [rows, heads * d] f32, or with splits > 1 [splits, rows, heads, d + 2]
    uint rows;
    uint heads;
    uint groupSize;           // query heads per kv head
    uint headDim;
    uint capacity;
    uint splits;
    uint splitLength;         // positions per split
    float scale;
    uint block;               // query heads per workgroup: a divisor of groupSize, at most MAX_BLOCK
    uint rowBytes;            // quantized: bytes of a position's row
    uint keyBlock;            // quantized: the keys' (and queries') rotation block, 0 for none
    uint valueBlock;          // quantized: the values' (and outputs') rotation block, 0 for none
} p;

shared float qs[MAX_BLOCK * MAX_HEAD_DIM];
#if defined(KV_QUANTIZED)
#define ROTATED qs
#include "hadamard.glsl"
#endif
shared float weights[MAX_BLOCK][GROUP];   // the tile's scores, then its probabilities
shared float runningMax[MAX_BLOCK], runningSum[MAX_BLOCK], rescale[MAX_BLOCK];

void main() {
    uint g = linearGroup();
    uint blocks = p.heads / p.block;
    uint split = g % p.splits, rowBlock = g / p.splits;
    uint row = rowBlock / blocks, firstHead = (rowBlock % blocks) * p.block;
    if (row >= p.rows) { return; }
    uint t = gl_LocalInvocationID.x, d = p.headDim, n = p.block;
    uint kvDim = (p.heads / p.groupSize) * d;
    uint slot = uint(Ints(p.slotsPositions).i[row]);
    uint length_ = uint(Ints(p.slotsPositions).i[p.rows + row]) + 1u;
    uint begin = split * p.splitLength, end = min(length_, begin + p.splitLength);
    uint qBase = row * p.heads * d + firstHead * d;    // the block's heads are consecutive
    uint kvHead = firstHead / p.groupSize, kvBase = slot * p.capacity * kvDim + kvHead * d;
    for (uint i = t; i < n * d; i += GROUP) { qs[i] = Floats(p.q).f[qBase + i]; }
    if (t < n) {
        runningMax[t] = NEGATIVE_INFINITY;
        runningSum[t] = 0.0;
    }
    barrier();
#if defined(KV_QUANTIZED)
    if (p.keyBlock != 0u) { rotateShared(n * d, p.keyBlock, t, GROUP); }
#endif

    float o[MAX_BLOCK][PER_INVOCATION];
    for (uint h = 0; h < MAX_BLOCK; h++) { for (uint i = 0; i < PER_INVOCATION; i++) { o[h][i] = 0.0; } }
    Floats values = Floats(p.values);
    for (uint tile = begin; tile < end; tile += GROUP) {
        uint j = tile + t, count = min(GROUP, end - tile);
        float s[MAX_BLOCK];
        for (uint h = 0; h < MAX_BLOCK; h++) { s[h] = 0.0; }
        if (j < end) {
#if defined(KV_QUANTIZED)
            // The key a block of 32 at a time: its codes a word at a time, then its scale once.
            uint row = (slot * p.capacity + j) * p.rowBytes;
            for (uint b = 0; b < d; b += 32u) {
                float part[MAX_BLOCK];
                for (uint h = 0; h < MAX_BLOCK; h++) { part[h] = 0.0; }
                for (uint i = b; i < b + 32u; i += KV_VALUES_PER_WORD) {
                    uint word = KvWords(p.keys).u[(row + kvCodeByte(kvHead * d + i)) >> 2];
                    for (uint v = 0; v < KV_VALUES_PER_WORD; v += 4u) {
                        vec4 k = kvFour(word, v);
                        for (uint h = 0; h < MAX_BLOCK; h++) {
                            if (h < n) {
                                uint e = h * d + i + v;
                                part[h] += dot(vec4(qs[e], qs[e + 1u], qs[e + 2u], qs[e + 3u]), k);
                            }
                        }
                    }
                }
                float scale = kvScale(p.keys, row, kvDim, (kvHead * d + b) >> 5);
                for (uint h = 0; h < MAX_BLOCK; h++) { s[h] += scale * part[h]; }
            }
#else
            // The key in 16-byte loads (d and the cache's rows are whole multiples of 4 floats): a quarter of the loads.
            uint at = (kvBase + j * kvDim) / 4u;
            for (uint i = 0; i < d; i += 4u) {
#if defined(KV_F16) || defined(KV_BF16)
                uvec2 words = KvWordPairs(p.keys).v[at + i / 4u];
                vec4 k = vec4(kvPair(words.x), kvPair(words.y));
#else
                vec4 k = Float4s(p.keys).v[at + i / 4u];
#endif
                for (uint h = 0; h < MAX_BLOCK; h++) {
                    if (h < n) {
                        uint e = h * d + i;
                        s[h] += dot(vec4(qs[e], qs[e + 1u], qs[e + 2u], qs[e + 3u]), k);
                    }
                }
            }
#endif
        }
        for (uint h = 0; h < MAX_BLOCK; h++) {
            if (h < n) { weights[h][t] = j < end ? s[h] * p.scale : NEGATIVE_INFINITY; }
        }
        barrier();
        if (t < n) {
            // Head t's new running max; rescale is what its earlier sum and outputs are multiplied by (0 on the first tile).
            float m = NEGATIVE_INFINITY;
            for (uint jj = 0; jj < count; jj++) { m = max(m, weights[t][jj]); }
            float newMax = max(runningMax[t], m);
            rescale[t] = exp(runningMax[t] - newMax);
            runningMax[t] = newMax;
        }
        barrier();
        for (uint h = 0; h < MAX_BLOCK; h++) {
            if (h < n) { weights[h][t] = j < end ? exp(weights[h][t] - runningMax[h]) : 0.0; }
        }
        barrier();
        if (t < n) {
            float sum = 0.0;
            for (uint jj = 0; jj < count; jj++) { sum += weights[t][jj]; }
            runningSum[t] = runningSum[t] * rescale[t] + sum;
        }
        for (uint i = 0; i < PER_INVOCATION; i++) {
            uint c = t + i * GROUP;
            if (c < d) {
                float acc[MAX_BLOCK];
                for (uint h = 0; h < MAX_BLOCK; h++) { acc[h] = h < n ? o[h][i] * rescale[h] : 0.0; }
                for (uint jj = 0; jj < count; jj++) {
#if defined(KV_QUANTIZED)
                    uint row = (slot * p.capacity + tile + jj) * p.rowBytes, at = kvHead * d + c;
                    float v = kvScale(p.values, row, kvDim, at >> 5) * kvCode(p.values, row, at);
#elif defined(KV_F16) || defined(KV_BF16)
                    uint e = kvBase + (tile + jj) * kvDim + c;
                    vec2 pair = kvPair(KvWords(p.values).u[e >> 1]);
                    float v = (e & 1u) == 0u ? pair.x : pair.y;
#else
                    float v = values.f[kvBase + (tile + jj) * kvDim + c];
#endif
                    for (uint h = 0; h < MAX_BLOCK; h++) {
                        if (h < n) { acc[h] += weights[h][jj] * v; }
                    }
                }
                for (uint h = 0; h < MAX_BLOCK; h++) { o[h][i] = acc[h]; }
            }
        }
        barrier();
    }

#if defined(KV_QUANTIZED)
    if (p.valueBlock != 0u) {
        // The outputs through shared memory (the queries are no longer read; the loop ended with a barrier), rotated back.
        for (uint h = 0; h < n; h++) {
            for (uint i = 0; i < PER_INVOCATION; i++) {
                uint c = t + i * GROUP;
                if (c < d) { qs[h * d + c] = o[h][i]; }
            }
        }
        barrier();
        rotateShared(n * d, p.valueBlock, t, GROUP);
        for (uint h = 0; h < n; h++) {
            for (uint i = 0; i < PER_INVOCATION; i++) {
                uint c = t + i * GROUP;
                if (c < d) { o[h][i] = qs[h * d + c]; }
            }
        }
    }
#endif

    for (uint h = 0; h < MAX_BLOCK; h++) {
        if (h >= n) { break; }
        uint head = firstHead + h;
        if (p.splits == 1u) {
            for (uint i = 0; i < PER_INVOCATION; i++) {
                uint c = t + i * GROUP;
                if (c < d) { Floats(p.out_).f[qBase + h * d + c] = o[h][i] / runningSum[h]; }
            }
        } else {
            // Partial result: d unnormalized outputs, then the max and the sum (an empty split has sum 0).
            uint base = ((split * p.rows + row) * p.heads + head) * (d + 2u);
            for (uint i = 0; i < PER_INVOCATION; i++) {
                uint c = t + i * GROUP;
                if (c < d) { Floats(p.out_).f[base + c] = o[h][i]; }
            }
            if (t == 0u) {
                Floats(p.out_).f[base + d] = runningMax[h];
                Floats(p.out_).f[base + d + 1u] = runningSum[h];
            }
        }
    }
}
