#version 460
// Writes each row's keys and values into one layer of a q8_0 cache at (slot, position), laid out as common.glsl says. One
// workgroup per (row, kv head, keys or values): the head is rotated in shared memory (KvCacheRotation: keys in blocks of
// keyBlock, values of valueBlock; 0 where heads do not rotate), then each block of 32 quantized as llama.cpp's
// quantize_row_q8_0_ref does: scale d = max |x| / 127, stored as f16; code = round(x / d) (halves away from zero; 0 for a
// block of zeros). Invocation t takes values 4t..4t + 3, one word of codes.
#include "common.glsl"
layout(local_size_x = 64) in;
const uint MAX_HEAD_DIM = 256;
layout(push_constant) uniform Push {
    uint64_t k;          // [rows, kvDim] f32
    uint64_t v;          // [rows, kvDim] f32
    uint64_t keys;       // [slots, capacity] rows of rowBytes: this layer's cache
    uint64_t values;
    uint64_t slotsPositions;  // [rows] slots, then [rows] positions, int
    uint rows;
    uint kvDim;
    uint capacity;
    uint headDim;        // a multiple of 32, at most MAX_HEAD_DIM
    uint keyBlock;       // keys' rotation block, 0 for none
    uint valueBlock;     // values' rotation block, 0 for none
    uint rowBytes;
} p;

shared float head[MAX_HEAD_DIM];
#define ROTATED head
#include "hadamard.glsl"
shared float wordMax[MAX_HEAD_DIM / 4];

void main() {
    uint g = linearGroup(), kvHeads = p.kvDim / p.headDim;
    uint isValue = g & 1u, kvHead = (g >> 1) % kvHeads, row = (g >> 1) / kvHeads;
    if (row >= p.rows) { return; }
    uint t = gl_LocalInvocationID.x, d = p.headDim, first = row * p.kvDim + kvHead * d;
    uint64_t source = isValue == 1u ? p.v : p.k, cache = isValue == 1u ? p.values : p.keys;
    uint block = isValue == 1u ? p.valueBlock : p.keyBlock;
    for (uint i = t; i < d; i += 64u) { head[i] = Floats(source).f[first + i]; }
    barrier();
    if (block != 0u) { rotateShared(d, block, t, 64u); }

    bool writes = 4u * t < d;
    vec4 x = writes ? vec4(head[4u * t], head[4u * t + 1u], head[4u * t + 2u], head[4u * t + 3u]) : vec4(0.0);
    vec4 magnitude = abs(x);
    wordMax[t] = max(max(magnitude.x, magnitude.y), max(magnitude.z, magnitude.w));
    barrier();
    if (!writes) { return; }
    uint firstWord = t & ~7u;   // the eight words of this block of 32
    float amax = 0.0;
    for (uint w = firstWord; w < firstWord + 8u; w++) { amax = max(amax, wordMax[w]); }
    float scale = amax / 127.0, inverse = scale != 0.0 ? 1.0 / scale : 0.0;
    vec4 scaled = x * inverse;
    ivec4 codes = ivec4(sign(scaled) * floor(abs(scaled) + 0.5));
    uint slot = uint(Ints(p.slotsPositions).i[row]), position = uint(Ints(p.slotsPositions).i[p.rows + row]);
    uint at = (slot * p.capacity + position) * p.rowBytes;
    KvWords(cache).u[(at + kvHead * d + 4u * t) >> 2] =
        (uint(codes.x) & 0xFFu) | ((uint(codes.y) & 0xFFu) << 8) | ((uint(codes.z) & 0xFFu) << 16) | (uint(codes.w) << 24);
    if (t == firstWord) {
        setHalfWord(cache, at + p.kvDim + 2u * ((kvHead * d + 4u * t) >> 5), kvBits(scale));
    }
}
