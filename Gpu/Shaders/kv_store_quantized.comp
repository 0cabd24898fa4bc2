#version 460
// Writes each row's keys and values into one layer of a quantized cache (KV_Q8_0 or KV_Q4_0) at (slot, position), laid
// out as common.glsl says. One workgroup per (row, kv head, keys or values): the head is rotated in shared memory
// (KvCacheRotation: keys in blocks of keyBlock, values of valueBlock; 0 where heads do not rotate), then each block of 32
// quantized as llama.cpp's reference quantizers do, its scale stored as f16:
// - q8_0 (quantize_row_q8_0_ref): d = max |x| / 127, code = round(x / d), halves away from zero;
// - q4_0 (quantize_row_q4_0_ref): the first value of largest magnitude m, sign kept, d = m / -8, code = min(15, trunc(x / d + 8.5)).
// A block of zeros has d = 0 and codes 0 (q8_0) or 8 (q4_0). Invocation t takes one word of codes: values
// KV_VALUES_PER_WORD t and on.
#include "common.glsl"
layout(local_size_x = 64) in;
const uint MAX_HEAD_DIM = 256;
const uint WORDS_PER_BLOCK = 32u / KV_VALUES_PER_WORD;
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
shared float wordMagnitude[64];   // each word's largest magnitude
shared float wordLargest[64];     // q4_0: the first value of that magnitude, sign kept

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

    // This word's values, and its largest magnitude (the first such value, in order, as the reference scans).
    uint firstValue = KV_VALUES_PER_WORD * t;
    bool writes = firstValue < d;
    float magnitude = 0.0, largest = 0.0;
    if (writes) {
        for (uint i = 0; i < KV_VALUES_PER_WORD; i++) {
            float x = head[firstValue + i];
            if (magnitude < abs(x)) {
                magnitude = abs(x);
                largest = x;
            }
        }
    }
    wordMagnitude[t] = magnitude;
    wordLargest[t] = largest;
    barrier();
    if (!writes) { return; }
    uint firstWord = t - t % WORDS_PER_BLOCK;   // the words of this block of 32
    float amax = 0.0, max_ = 0.0;
    for (uint w = firstWord; w < firstWord + WORDS_PER_BLOCK; w++) {
        if (amax < wordMagnitude[w]) {
            amax = wordMagnitude[w];
            max_ = wordLargest[w];
        }
    }
#if defined(KV_Q8_0)
    float scale = amax / 127.0;
#else
    float scale = max_ / -8.0;
#endif
    float inverse = scale != 0.0 ? 1.0 / scale : 0.0;
    uint word = 0u;
    for (uint i = 0; i < KV_VALUES_PER_WORD; i++) {
        float x = head[firstValue + i] * inverse;
#if defined(KV_Q8_0)
        uint code = uint(int(sign(x) * floor(abs(x) + 0.5))) & 0xFFu;
#else
        uint code = min(15u, uint(int(x + 8.5)));
#endif
        word |= code << (i * (32u / KV_VALUES_PER_WORD));
    }
    uint slot = uint(Ints(p.slotsPositions).i[row]), position = uint(Ints(p.slotsPositions).i[p.rows + row]);
    uint at = (slot * p.capacity + position) * p.rowBytes;
    KvWords(cache).u[(at + kvCodeByte(kvHead * d + firstValue)) >> 2] = word;
    if (t == firstWord) {
        setHalfWord(cache, at + kvCodeByte(p.kvDim) + 2u * ((kvHead * d + firstValue) >> 5), kvBits(scale));
    }
}
