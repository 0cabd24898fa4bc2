#version 460
// Rotary position embedding, NeoX / HF rotate_half form: element i of a head pairs with i + d/2.
//   out[i] = x[i] cos - x[i + d/2] sin,   out[i + d/2] = x[i + d/2] cos + x[i] sin
// cos and sin come from the host per row (angles in double there: an f32 angle at position 30000 with
// rope_theta 1e6 is off by hundredths of a radian). One invocation per (row, head, pair).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint64_t q;       // [rows, heads * d] f32
    uint64_t k;       // [rows, kvHeads * d] f32
    uint64_t angles;  // [rows, d/2] cos, then [rows, d/2] sin
    uint rows;
    uint heads;
    uint kvHeads;
    uint headDim;
} p;

void main() {
    uint half_ = p.headDim / 2u;
    uint index = linearGroup() * 256u + gl_LocalInvocationID.x;
    uint perRow = (p.heads + p.kvHeads) * half_;
    if (index >= p.rows * perRow) { return; }
    uint row = index / perRow, rest = index % perRow;
    uint head = rest / half_, i = rest % half_;
    float c = Floats(p.angles).f[row * half_ + i];
    float s = Floats(p.angles).f[(p.rows + row) * half_ + i];
    Floats target = head < p.heads ? Floats(p.q) : Floats(p.k);
    uint width = head < p.heads ? p.heads * p.headDim : p.kvHeads * p.headDim;
    uint h = head < p.heads ? head : head - p.heads;
    uint a = row * width + h * p.headDim + i, b = a + half_;
    float x0 = target.f[a], x1 = target.f[b];
    target.f[a] = x0 * c - x1 * s;
    target.f[b] = x1 * c + x0 * s;
}
