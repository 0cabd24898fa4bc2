#version 460
// destination[i] = source[rows[i]]: the rows whose logits are wanted.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint64_t source;       // [.., cols] f32
    uint64_t rows;         // [count] int
    uint64_t destination;  // [count, cols] f32
    uint count;
    uint cols;
} p;

void main() {
    uint i = linearGroup() * 256u + gl_LocalInvocationID.x;
    if (i >= p.count * p.cols) { return; }
    uint r = i / p.cols, c = i % p.cols;
    Floats(p.destination).f[i] = Floats(p.source).f[uint(Ints(p.rows).i[r]) * p.cols + c];
}
