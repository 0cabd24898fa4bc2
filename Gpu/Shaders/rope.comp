#version 460
// Rotary position embedding, NeoX / HF rotate_half form: element i of a head pairs with i + d/2.
//   out[i] = x[i] cos - x[i + d/2] sin,   out[i + d/2] = x[i + d/2] cos + x[i] sin
// cos and sin come from the host per row (angles in double there: an f32 angle at position 30000 with
// rope_theta 1e6 is off by hundredths of a radian). One invocation per (row, head, pair).
// With `keys` set, this is also kv_store.comp for the attention that follows (one launch instead of two): each
// rotated key pair goes to the cache at its row's (slot, position) as well, and a further kvDim invocations a
// row copy the values there.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint64_t q;       // [rows, heads * d] f32
    uint64_t k;       // [rows, kvHeads * d] f32
    uint64_t angles;  // [rows, d/2] cos, then [rows, d/2] sin
    uint64_t v;               // [rows, kvHeads * d] f32, with keys
    uint64_t keys;            // [slots, capacity, kvHeads * d] f32: a layer's cache, or 0
    uint64_t values;
    uint64_t slotsPositions;  // [rows] slots, then [rows] positions, int
    uint rows;
    uint heads;
    uint kvHeads;
    uint headDim;
    uint capacity;
} p;

void main() {
    uint half_ = p.headDim / 2u, kvDim = p.kvHeads * p.headDim;
    uint index = linearGroup() * 256u + gl_LocalInvocationID.x;
    uint pairs = (p.heads + p.kvHeads) * half_;
    uint perRow = pairs + (p.keys != 0ul ? kvDim : 0u);
    if (index >= p.rows * perRow) { return; }
    uint row = index / perRow, rest = index % perRow;
    uint cacheRow = 0u;
    if (p.keys != 0ul) {
        uint slot = uint(Ints(p.slotsPositions).i[row]), position = uint(Ints(p.slotsPositions).i[p.rows + row]);
        cacheRow = (slot * p.capacity + position) * kvDim;
    }
    if (rest >= pairs) {
        uint c = rest - pairs;
        Floats(p.values).f[cacheRow + c] = Floats(p.v).f[row * kvDim + c];
        return;
    }
    uint head = rest / half_, i = rest % half_;
    float c = Floats(p.angles).f[row * half_ + i];
    float s = Floats(p.angles).f[(p.rows + row) * half_ + i];
    Floats target = head < p.heads ? Floats(p.q) : Floats(p.k);
    uint width = head < p.heads ? p.heads * p.headDim : kvDim;
    uint h = head < p.heads ? head : head - p.heads;
    uint a = row * width + h * p.headDim + i, b = a + half_;
    float x0 = target.f[a], x1 = target.f[b];
    float y0 = x0 * c - x1 * s, y1 = x1 * c + x0 * s;
    target.f[a] = y0;
    target.f[b] = y1;
    if (p.keys != 0ul && head >= p.heads) {
        Floats(p.keys).f[cacheRow + h * p.headDim + i] = y0;
        Floats(p.keys).f[cacheRow + h * p.headDim + i + half_] = y1;
    }
}
