/*
 * hash64.h: a fast 64-bit non-cryptographic hash for checksums and content
 * identity (snapshot chunks, module and model identity).
 *
 * It detects accidents (a truncated file, a flipped bit, the wrong model),
 * not forgeries: a snapshot is untrusted guest state either way, and its
 * contents are confined to the sandbox it is restored into.
 */
#ifndef SP_HASH64_H
#define SP_HASH64_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_hash64 {
  uint64_t lanes[4];
  uint8_t tail[32];
  size_t tail_len;
  uint64_t total;
} sp_hash64;

void sp_hash64_init(sp_hash64 *h, uint64_t seed);
void sp_hash64_update(sp_hash64 *h, const void *data, size_t len);
uint64_t sp_hash64_final(const sp_hash64 *h);

/* One-shot hash of a buffer. */
uint64_t sp_hash64_of(const void *data, size_t len);

#endif
