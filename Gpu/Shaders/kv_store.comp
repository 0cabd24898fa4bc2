#version 460
// Writes each row's keys and values into one layer of the cache at (slot, position): f32, or with KV_F16 / KV_BF16 two
// halves a word, one invocation per word.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint64_t k;          // [rows, kvDim] f32
    uint64_t v;          // [rows, kvDim] f32
    uint64_t keys;       // [slots, capacity, kvDim] f32: this layer's cache
    uint64_t values;
    uint64_t slotsPositions;  // [rows] slots, then [rows] positions, int
    uint rows;
    uint kvDim;
    uint capacity;
} p;

#if defined(KV_F16) || defined(KV_BF16)
const uint PER_INVOCATION = 2u;
#else
const uint PER_INVOCATION = 1u;
#endif

void main() {
    uint index = (linearGroup() * 256u + gl_LocalInvocationID.x) * PER_INVOCATION;
    if (index >= p.rows * p.kvDim) { return; }
    uint row = index / p.kvDim, c = index % p.kvDim;
    uint slot = uint(Ints(p.slotsPositions).i[row]), position = uint(Ints(p.slotsPositions).i[p.rows + row]);
    uint at = (slot * p.capacity + position) * p.kvDim + c;
#if defined(KV_F16) || defined(KV_BF16)
    KvWords(p.keys).u[at / 2u] = kvBits(Floats(p.k).f[index]) | (kvBits(Floats(p.k).f[index + 1u]) << 16);
    KvWords(p.values).u[at / 2u] = kvBits(Floats(p.v).f[index]) | (kvBits(Floats(p.v).f[index + 1u]) << 16);
#else
    Floats(p.keys).f[at] = Floats(p.k).f[index];
    Floats(p.values).f[at] = Floats(p.v).f[index];
#endif
}
