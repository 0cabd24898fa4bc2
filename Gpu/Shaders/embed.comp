#version 460
// x[i] = table[tokens[i]]: one embedding row per token, widened to f32.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint64_t table;   // [vocab, cols] in the stored type
    uint64_t tokens;  // [rows] int
    uint64_t x;       // [rows, cols] f32
    uint rows;
    uint cols;
} p;

void main() {
    uint index = linearGroup() * 256u + gl_LocalInvocationID.x;
    if (index >= p.rows * p.cols) { return; }
    uint row = index / p.cols, col = index % p.cols;
    uint token = uint(Ints(p.tokens).i[row]);
    Floats(p.x).f[index] = weightAt(p.table, token * p.cols + col);
}
