// The rotation of a quantized KV cache (KvCacheRotation in Core): each consecutive `block` values (a power of two) of
// the first `count` of the shared array ROTATED (the includer defines it) multiplied by the orthonormal Walsh-Hadamard
// matrix H_block, in place, by the whole workgroup of `invocations`: log2(block) rounds of sums and differences of pairs,
// then 1/sqrt(block), as the CPU's KvRotation.Rotate does round for round. The caller has written the values and passed a
// barrier; this ends with one.
void rotateShared(uint count, uint block, uint t, uint invocations) {
    for (uint h = 1u; h < block; h <<= 1) {
        for (uint i = t; i < count / 2u; i += invocations) {
            uint lo = (i / h) * 2u * h + (i % h), hi = lo + h;
            float a = ROTATED[lo], b = ROTATED[hi];
            ROTATED[lo] = a + b;
            ROTATED[hi] = a - b;
        }
        barrier();
    }

    // 1/sqrt(2^k) exactly for even k (64, 256), and the float nearest sqrt(2) halved (k + 1) / 2 times for odd k.
    int k = findLSB(block);
    float scale = (k & 1) == 0 ? ldexp(1.0, -k / 2) : ldexp(1.41421356, -(k + 1) / 2);
    for (uint i = t; i < count; i += invocations) { ROTATED[i] *= scale; }
    barrier();
}
