/*
 * written_pages.h: which pages of a private file mapping this process has
 * written (its copy-on-write copies), read from /proc/self/pagemap. A
 * snapshot stores only those pages of a mapped model; the isolation proxy
 * sends only those to its worker. Below the runtime and the backends both,
 * so neither depends on the other for it.
 */
#ifndef SP_WRITTEN_PAGES_H
#define SP_WRITTEN_PAGES_H

#include <stdbool.h>
#include <stdint.h>

/* Opens /proc/self/pagemap (-1 when unavailable); the caller closes it. */
int sp_pagemap_open(void);

/* Whether any host page of bytes [addr, addr + len) of the memory at base
 * holds private (copy-on-write) data rather than the mapped file's: it was
 * written. With fd < 0 it answers true (storing a page is always correct). */
bool sp_written_any(int pagemap_fd, const uint8_t *base, uint64_t addr, uint64_t len);

/* The first run of written pages inside bytes [addr, addr + len) of the
 * memory at base (addr page aligned): its start in *at, its length
 * returned, 0 when there is none. Without a pagemap (fd < 0) the whole
 * range is one run. */
uint64_t sp_written_run(int pagemap_fd, const uint8_t *base, uint64_t addr, uint64_t len, uint64_t *at);

#endif
