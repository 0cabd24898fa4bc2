#version 460
// Writes each row's keys and values into one layer of the cache at (slot, position).
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

void main() {
    uint index = linearGroup() * 256u + gl_LocalInvocationID.x;
    if (index >= p.rows * p.kvDim) { return; }
    uint row = index / p.kvDim, c = index % p.kvDim;
    uint slot = uint(Ints(p.slotsPositions).i[row]), position = uint(Ints(p.slotsPositions).i[p.rows + row]);
    uint at = (slot * p.capacity + position) * p.kvDim + c;
    Floats(p.keys).f[at] = Floats(p.k).f[index];
    Floats(p.values).f[at] = Floats(p.v).f[index];
}
