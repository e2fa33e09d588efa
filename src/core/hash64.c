/* hash64.c: four independent multiply-rotate lanes over 32-byte stripes
 * (several GB/s), folded and avalanched at the end. */
#include "core/hash64.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t read64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static inline uint64_t round64(uint64_t acc, uint64_t input) {
  return rotl(acc + input * P2, 31) * P1;
}

void sp_hash64_init(sp_hash64 *h, uint64_t seed) {
  memset(h, 0, sizeof *h);
  h->lanes[0] = seed + P1 + P2;
  h->lanes[1] = seed + P2;
  h->lanes[2] = seed;
  h->lanes[3] = seed - P1;
}

static void stripe(sp_hash64 *h, const uint8_t *p) {
  for (int i = 0; i < 4; i++) h->lanes[i] = round64(h->lanes[i], read64(p + 8 * i));
}

void sp_hash64_update(sp_hash64 *h, const void *data, size_t len) {
  const uint8_t *p = data;
  h->total += len;
  if (h->tail_len) {
    size_t take = 32 - h->tail_len < len ? 32 - h->tail_len : len;
    memcpy(h->tail + h->tail_len, p, take);
    h->tail_len += take, p += take, len -= take;
    if (h->tail_len < 32) return;
    stripe(h, h->tail);
    h->tail_len = 0;
  }
  for (; len >= 32; p += 32, len -= 32) stripe(h, p);
  memcpy(h->tail, p, len);
  h->tail_len = len;
}

uint64_t sp_hash64_final(const sp_hash64 *h) {
  uint64_t acc = rotl(h->lanes[0], 1) + rotl(h->lanes[1], 7) + rotl(h->lanes[2], 12) + rotl(h->lanes[3], 18);
  for (int i = 0; i < 4; i++) acc = (acc ^ round64(0, h->lanes[i])) * P1 + P3;
  acc += h->total;
  for (size_t i = 0; i < h->tail_len; i++) acc = rotl(acc ^ (h->tail[i] * P3), 11) * P1;
  acc ^= acc >> 33, acc *= P2, acc ^= acc >> 29, acc *= P3, acc ^= acc >> 32;
  return acc;
}

uint64_t sp_hash64_of(const void *data, size_t len) {
  sp_hash64 h;
  sp_hash64_init(&h, 0);
  sp_hash64_update(&h, data, len);
  return sp_hash64_final(&h);
}
