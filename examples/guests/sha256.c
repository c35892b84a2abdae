/*
 * SHA-256 (FIPS 180-4), freestanding, as a kvmpool sandbox guest.
 *
 *   long sha256(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
 *
 * writes the 32-byte digest of the n input bytes to out and returns 32, or -1 when cap < 32.
 * Plain C: gcc -O2 for x86-64 uses at most SSE2, which a sandbox guest may use without an OS.
 */
#include "kvmpool.h"

#define SHA256_DIGEST_BYTES 32
#define SHA256_BLOCK_BYTES 64

/* §4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* §5.3.3: the first 32 bits of the fractional parts of the square roots of the first 8 primes. */
static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

/* §4.1.2 */
static inline uint32_t ch(uint32_t x, uint32_t y, uint32_t z) { return (x & y) ^ (~x & z); }
static inline uint32_t maj(uint32_t x, uint32_t y, uint32_t z) { return (x & y) ^ (x & z) ^ (y & z); }
static inline uint32_t big_sigma0(uint32_t x) { return rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22); }
static inline uint32_t big_sigma1(uint32_t x) { return rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25); }
static inline uint32_t small_sigma0(uint32_t x) { return rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3); }
static inline uint32_t small_sigma1(uint32_t x) { return rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10); }

static inline uint32_t load_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* §6.2.2: one 512-bit block into the hash state. */
static void compress(uint32_t h[8], const uint8_t block[SHA256_BLOCK_BYTES]) {
  uint32_t w[64];
  for (int t = 0; t < 16; t++) w[t] = load_be32(block + 4 * t);
  for (int t = 16; t < 64; t++) w[t] = small_sigma1(w[t - 2]) + w[t - 7] + small_sigma0(w[t - 15]) + w[t - 16];

  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int t = 0; t < 64; t++) {
    uint32_t t1 = hh + big_sigma1(e) + ch(e, f, g) + K[t] + w[t];
    uint32_t t2 = big_sigma0(a) + maj(a, b, c);
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

static void sha256_digest(const uint8_t *in, size_t n, uint8_t out[SHA256_DIGEST_BYTES]) {
  uint32_t h[8];
  for (int i = 0; i < 8; i++) h[i] = H0[i];

  size_t whole = n - n % SHA256_BLOCK_BYTES;
  for (size_t off = 0; off < whole; off += SHA256_BLOCK_BYTES) compress(h, in + off);

  /* §5.1.1 padding: the rest, a 1 bit, zeros, then the length in bits as a 64-bit big-endian
     number; one final block if the rest is at most 55 bytes, two otherwise. */
  uint8_t tail[2 * SHA256_BLOCK_BYTES];
  size_t rest = n - whole;
  memset(tail, 0, sizeof tail);
  memcpy(tail, in + whole, rest);
  tail[rest] = 0x80;
  size_t tail_len = rest + 1 + 8 <= SHA256_BLOCK_BYTES ? SHA256_BLOCK_BYTES : 2 * SHA256_BLOCK_BYTES;
  uint64_t bits = (uint64_t)n * 8;
  store_be32(tail + tail_len - 8, (uint32_t)(bits >> 32));
  store_be32(tail + tail_len - 4, (uint32_t)bits);
  for (size_t off = 0; off < tail_len; off += SHA256_BLOCK_BYTES) compress(h, tail + off);

  for (int i = 0; i < 8; i++) store_be32(out + 4 * i, h[i]);
}

KVMPOOL_EXPORT long sha256(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  if (cap < SHA256_DIGEST_BYTES) return -1;
  sha256_digest(in, n, out);
  return SHA256_DIGEST_BYTES;
}
