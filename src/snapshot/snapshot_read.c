/*
 * snapshot_read.c: sp_actor_restore. The whole file is parsed and every
 * checksum, length and identity verified before the actor is touched, so a
 * corrupt, truncated or mismatched snapshot is refused with nothing
 * changed. Then: grow memory to the saved size, zero what the snapshot
 * does not hold, map the referenced file ranges, write the saved pages, set
 * the globals, restore the frozen ranges. Bytes of device-local ranges go
 * straight to the backend's mirrors, where it keeps them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/file_open.h"
#include "core/hash64.h"
#include "core/parallel.h"
#include "runtime/range_identity.h"
#include "snapshot/snapshot.h"
#include "snapshot/snapshot_format.h"

#define MAX_REFS 64
#define MAX_RUNS 65536

typedef struct snap_blob_ref {
  const char *name;
  uint16_t name_len;
  bool read; /* BLOB_READ: the range was read, not mapped */
  uint64_t file_size, content_hash, file_offset, guest_addr, length;
} snap_blob_ref;

typedef struct snap_view {
  const uint8_t *file;
  uint64_t size;
  uint32_t flags;
  uint64_t module_hash, memory;
  const uint8_t *globals;
  uint64_t globals_len;
  const uint8_t *frozen;
  uint64_t frozen_len;
  const uint8_t *local; /* LOCAL: the device-local ranges */
  uint64_t local_len;
  const uint8_t *annot;
  uint64_t annot_len;
  uint32_t seen;        /* bit per chunk type met so far (each at most once) */
  /* Parsed from the chunks above and checked (check_view) before any use: */
  sp_range frozen_r[SP_MAX_FROZEN], local_r[SP_MAX_DEVICE_LOCAL];
  uint32_t n_frozen, n_local;
  sp_annotation *annots; /* names valid and distinct, tensors checked and normalized */
  uint32_t n_annots;
  snap_blob_ref refs[MAX_REFS];
  int n_refs;
  const uint8_t **runs; /* PAGES payloads, grown as chunks are found (a
                           fixed MAX_RUNS table cost 512 KiB per open) */
  uint64_t n_runs, runs_cap;
  bool have_module, have_memory, have_end;
} snap_view;

/* An opened, verified snapshot file (also used by sp_actor_restore). */
struct sp_snapshot_file {
  snap_view view;
  bool mapped; /* view.file is our mapping (else the caller's bytes) */
};

static uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* PAGES run i: the guest bytes it holds, and their saved copy. */
typedef struct page_run {
  uint64_t addr, len;
  const uint8_t *bytes;
} page_run;

static page_run run_at(const snap_view *v, uint64_t i) {
  uint32_t count;
  memcpy(&count, v->runs[i] + 8, 4);
  return (page_run){rd64(v->runs[i]) * SP_SNAP_PAGE, (uint64_t)count * SP_SNAP_PAGE, v->runs[i] + 12};
}

static sp_error_t *parse_blob_ref(snap_view *v, const uint8_t *p, uint64_t len, uint64_t idx, bool read) {
  if (v->n_refs == MAX_REFS) return sp_error_new("snapshot: chunk %" PRIu64 ": more than %d file references", idx, MAX_REFS);
  uint16_t nl;
  if (len < 2) return sp_error_new("snapshot: chunk %" PRIu64 " (file reference) is truncated", idx);
  memcpy(&nl, p, 2);
  if (len != 2u + nl + 40u) return sp_error_new("snapshot: chunk %" PRIu64 " (file reference) has a bad length", idx);
  snap_blob_ref *r = &v->refs[v->n_refs++];
  r->name = (const char *)p + 2, r->name_len = nl, r->read = read;
  const uint8_t *f = p + 2 + nl;
  r->file_size = rd64(f), r->content_hash = rd64(f + 8), r->file_offset = rd64(f + 16);
  r->guest_addr = rd64(f + 24), r->length = rd64(f + 32);
  if (r->guest_addr % SP_SNAP_PAGE || r->length == 0 || r->guest_addr > v->memory || r->length > v->memory - r->guest_addr)
    return sp_error_new("snapshot: chunk %" PRIu64 ": file range [0x%" PRIx64 ", +%" PRIu64 ") is outside its memory", idx,
                        r->guest_addr, r->length);
  return NULL;
}

static sp_error_t *parse_pages(snap_view *v, const uint8_t *p, uint64_t len, uint64_t idx) {
  if (len < 12) return sp_error_new("snapshot: chunk %" PRIu64 " (pages) is truncated", idx);
  uint64_t first = rd64(p);
  uint32_t count;
  memcpy(&count, p + 8, 4);
  if (count == 0 || len != 12 + (uint64_t)count * SP_SNAP_PAGE)
    return sp_error_new("snapshot: chunk %" PRIu64 " (pages) has a bad length", idx);
  if (first > v->memory / SP_SNAP_PAGE || count > v->memory / SP_SNAP_PAGE - first)
    return sp_error_new("snapshot: chunk %" PRIu64 ": pages %" PRIu64 "+%u lie outside its memory", idx, first, count);
  if (v->n_runs == MAX_RUNS) return sp_error_new("snapshot: too many page chunks");
  if (v->n_runs == v->runs_cap) {
    uint64_t cap = v->runs_cap ? 2 * v->runs_cap : 16;
    const uint8_t **grown = realloc(v->runs, (size_t)cap * sizeof *grown);
    if (!grown) return sp_error_new("snapshot: out of memory for %" PRIu64 " page chunks", cap);
    v->runs = grown, v->runs_cap = cap;
  }
  v->runs[v->n_runs++] = p;
  return NULL;
}

static sp_error_t *parse_chunk(snap_view *v, uint32_t type, const uint8_t *p, uint64_t len, uint64_t idx) {
  /* One of each but file references and pages: a second memory chunk
   * would move the bounds the references and pages were checked against. */
  if (type != SP_SNAP_BLOB && type != SP_SNAP_BLOB_READ && type != SP_SNAP_PAGES && type < 32) {
    if (v->seen >> type & 1) return sp_error_new("snapshot: chunk %" PRIu64 " repeats a chunk of type %u", idx, type);
    v->seen |= 1u << type;
  }
  switch (type) {
    case SP_SNAP_MODULE:
      if (len != 16) return sp_error_new("snapshot: chunk %" PRIu64 " (module) has a bad length", idx);
      v->module_hash = rd64(p), v->have_module = true;
      return NULL;
    case SP_SNAP_MEMORY:
      if (len != 8) return sp_error_new("snapshot: chunk %" PRIu64 " (memory) has a bad length", idx);
      v->memory = rd64(p), v->have_memory = true;
      if (v->memory % SP_SNAP_PAGE || v->memory > ((uint64_t)1 << 32))
        return sp_error_new("snapshot: memory size %" PRIu64 " is not a valid wasm32 size", v->memory);
      return NULL;
    case SP_SNAP_GLOBALS: v->globals = p, v->globals_len = len; return NULL;
    case SP_SNAP_FROZEN: v->frozen = p, v->frozen_len = len; return NULL;
    case SP_SNAP_LOCAL: v->local = p, v->local_len = len; return NULL;
    case SP_SNAP_ANNOT: v->annot = p, v->annot_len = len; return NULL;
    case SP_SNAP_END: v->have_end = true; return NULL;
    default: break;
  }
  if (!v->have_memory) return sp_error_new("snapshot: chunk %" PRIu64 " comes before the memory chunk", idx);
  if (type == SP_SNAP_BLOB || type == SP_SNAP_BLOB_READ) return parse_blob_ref(v, p, len, idx, type == SP_SNAP_BLOB_READ);
  if (type == SP_SNAP_PAGES) return parse_pages(v, p, len, idx);
  return sp_error_new("snapshot: chunk %" PRIu64 " has unknown type %u", idx, type);
}

/* Where a chunk lies in the file (laid out before any is hashed). */
typedef struct chunk_at {
  uint32_t type;
  uint64_t at, length, hash;
} chunk_at;

#define MAX_CHUNKS (MAX_RUNS + 4096) /* page chunks and everything else */

/* The chunks' layout: each header whole, its reserved field zero, its
 * payload inside the file. *out is malloc'd. */
static sp_error_t *lay_out_chunks(const snap_view *v, uint64_t n_chunks, chunk_at **out, uint64_t *n) {
  uint64_t at = sizeof(sp_snap_header), cap = 0;
  chunk_at *chunks = NULL;
  sp_error_t *err = NULL;
  *n = 0;
  for (uint64_t i = 0; i < n_chunks && !err; i++) {
    sp_snap_chunk_header ch;
    if (v->size - at < sizeof ch) {
      err = sp_error_new("snapshot: truncated at chunk %" PRIu64 " of %" PRIu64, i, n_chunks);
      break;
    }
    memcpy(&ch, v->file + at, sizeof ch);
    at += sizeof ch;
    if (ch.reserved) err = sp_error_new("snapshot: chunk %" PRIu64 " has a nonzero reserved field (corrupt)", i);
    else if (ch.length > v->size - at)
      err = sp_error_new("snapshot: truncated in chunk %" PRIu64 " (needs %" PRIu64 " bytes, %" PRIu64 " left)", i,
                         ch.length, v->size - at);
    else if (i == MAX_CHUNKS) err = sp_error_new("snapshot: more than %d chunks", MAX_CHUNKS);
    if (err) break;
    if (*n == cap) {
      cap = cap ? 2 * cap : 64;
      chunk_at *grown = realloc(chunks, (size_t)cap * sizeof *grown);
      if (!grown) {
        err = sp_error_new("snapshot: out of memory for %" PRIu64 " chunks", cap);
        break;
      }
      chunks = grown;
    }
    chunks[(*n)++] = (chunk_at){ch.type, at, ch.length, ch.hash};
    at += ch.length;
  }
  *out = chunks;
  return err;
}

/* Every chunk's checksum (in parallel: parallel.h), then each chunk in
 * order; the first bad one is named. */
static sp_error_t *check_and_parse_chunks(snap_view *v, const chunk_at *chunks, uint64_t n) {
  sp_hash_job *jobs = malloc((n ? n : 1) * sizeof *jobs);
  if (!jobs) return sp_error_new("snapshot: out of memory");
  for (uint64_t i = 0; i < n; i++) jobs[i] = (sp_hash_job){v->file + chunks[i].at, chunks[i].length, 0};
  sp_hash64_many(jobs, n);
  sp_error_t *err = NULL;
  for (uint64_t i = 0; i < n && !err; i++) {
    if (jobs[i].hash != chunks[i].hash)
      err = sp_error_new("snapshot: chunk %" PRIu64 " (type %u) is corrupt (checksum mismatch)", i, chunks[i].type);
    else if (v->have_end) err = sp_error_new("snapshot: chunk %" PRIu64 " follows the end chunk", i);
    else err = parse_chunk(v, chunks[i].type, v->file + chunks[i].at, chunks[i].length, i);
  }
  free(jobs);
  return err;
}

/* ---- what the chunks declare, checked as a live guest's declarations
 * are (abi.c freeze, abi_device_local.c, abi_annotate.c), before any
 * restore or tool uses them ---- */

static bool overlap(sp_range a, sp_range b) { return a.addr < b.addr + b.len && b.addr < a.addr + a.len; }

/* A FROZEN or LOCAL chunk (u32 count, then u64 address, u64 length each):
 * every range non-empty, a wasm32 range inside the snapshot's memory, and
 * none overlapping another of the same kind. */
static sp_error_t *parse_ranges(const snap_view *v, const char *kind, const uint8_t *p, uint64_t len, uint32_t max,
                                sp_range *out, uint32_t *n) {
  uint32_t count = 0;
  *n = 0;
  if (!p) return NULL; /* an older snapshot: none */
  if (len >= 4) memcpy(&count, p, 4);
  if (len < 4 || count > max || len != 4 + (uint64_t)count * 16)
    return sp_error_new("snapshot: the %s-ranges chunk is malformed (%" PRIu64 " bytes; at most %u ranges of 16 bytes "
                        "after a count)", kind, len, max);
  for (uint32_t i = 0; i < count; i++) {
    sp_range r = {rd64(p + 4 + 16 * i), rd64(p + 12 + 16 * i)};
    if (r.len == 0 || r.len > UINT32_MAX || r.addr > v->memory || r.len > v->memory - r.addr)
      return sp_error_new("snapshot: %s range %u [0x%" PRIx64 ", +%" PRIu64 ") is empty or lies outside its memory (%" PRIu64
                          " bytes)", kind, i, r.addr, r.len, v->memory);
    for (uint32_t j = 0; j < i; j++)
      if (overlap(r, out[j]))
        return sp_error_new("snapshot: %s range %u [0x%" PRIx64 ", +%" PRIu64 ") overlaps %s range %u [0x%" PRIx64 ", +%" PRIu64 ")",
                            kind, i, r.addr, r.len, kind, j, out[j].addr, out[j].len);
    out[i] = r;
  }
  *n = count;
  return NULL;
}

/* The ANNOT chunk (u32 count; per entry u16 name length, name, sp_tensor):
 * exactly that long, names valid and distinct, each tensor checked against
 * the snapshot's memory as annotate checks it against committed memory. */
static sp_error_t *parse_annotations(snap_view *v) {
  if (!v->annot) return NULL; /* no chunk (and no pointer arithmetic on NULL) */
  const uint8_t *p = v->annot, *end = v->annot + v->annot_len;
  uint32_t count = 0;
  if (v->annot_len >= 4) memcpy(&count, p, 4), p += 4;
  if (v->annot_len < 4 || count > SP_MAX_ANNOTATIONS)
    return sp_error_new("snapshot: the annotations chunk is malformed (at most %d annotations)", SP_MAX_ANNOTATIONS);
  v->annots = calloc(count ? count : 1, sizeof *v->annots);
  if (!v->annots) return sp_error_new("snapshot: out of memory for %u annotations", count);
  for (uint32_t i = 0; i < count; i++) {
    uint16_t nl = 0;
    if (end - p >= 2) memcpy(&nl, p, 2);
    if (end - p < 2 || (uint64_t)(end - p) < 2u + nl + sizeof(sp_tensor))
      return sp_error_new("snapshot: the annotations chunk is truncated at annotation %u", i);
    if (!sp_annotation_name_valid((const char *)p + 2, nl))
      return sp_error_new("snapshot: annotation %u: its name is not 1..%d bytes of letters, digits, '.', '_' and '-'", i,
                          SP_ANNOTATION_NAME_MAX);
    sp_annotation *a = &v->annots[i];
    memcpy(a->name, p + 2, nl), a->name[nl] = '\0';
    memcpy(&a->tensor, p + 2 + nl, sizeof a->tensor);
    p += 2 + nl + sizeof(sp_tensor);
    for (uint32_t j = 0; j < i; j++)
      if (!strcmp(v->annots[j].name, a->name)) return sp_error_new("snapshot: annotation \"%s\" is named twice", a->name);
    char msg[256];
    if (sp_annotation_check_tensor(v->memory, &a->tensor, msg, sizeof msg))
      return sp_error_new("snapshot: annotation \"%s\": %s", a->name, msg);
    v->n_annots = i + 1;
  }
  if (p != end) return sp_error_new("snapshot: the annotations chunk has %td bytes past its %u annotations", end - p, count);
  return NULL;
}

/* Every declaration of the snapshot, against its memory and each other. */
static sp_error_t *check_view(snap_view *v) {
  sp_error_t *err = parse_ranges(v, "frozen", v->frozen, v->frozen_len, SP_MAX_FROZEN, v->frozen_r, &v->n_frozen);
  if (!err) err = parse_ranges(v, "device-local", v->local, v->local_len, SP_MAX_DEVICE_LOCAL, v->local_r, &v->n_local);
  for (uint32_t i = 0; !err && i < v->n_local; i++)
    for (uint32_t j = 0; !err && j < v->n_frozen; j++)
      if (overlap(v->local_r[i], v->frozen_r[j]))
        err = sp_error_new("snapshot: device-local range %u [0x%" PRIx64 ", +%" PRIu64 ") overlaps frozen range %u [0x%" PRIx64
                           ", +%" PRIu64 ")", i, v->local_r[i].addr, v->local_r[i].len, j, v->frozen_r[j].addr, v->frozen_r[j].len);
  return err ? err : parse_annotations(v);
}

static sp_error_t *parse_file(snap_view *v) {
  sp_snap_header hdr;
  if (v->size < sizeof hdr) return sp_error_new("snapshot: truncated (%" PRIu64 " bytes, no header)", v->size);
  memcpy(&hdr, v->file, sizeof hdr);
  if (memcmp(hdr.magic, SP_SNAP_MAGIC, 8)) return sp_error_new("snapshot: not a samepage snapshot (bad magic)");
  if (hdr.hash != sp_hash64_of(&hdr, 24)) return sp_error_new("snapshot: the header is corrupt (checksum mismatch)");
  if (hdr.version != SP_SNAP_VERSION) return sp_error_new("snapshot: version %u is not supported (this build reads %u)", hdr.version, SP_SNAP_VERSION);
  v->flags = hdr.flags;
  chunk_at *chunks = NULL;
  uint64_t n = 0;
  sp_error_t *err = lay_out_chunks(v, hdr.n_chunks, &chunks, &n);
  if (!err) err = check_and_parse_chunks(v, chunks, n);
  free(chunks);
  if (err) return err;
  if (!v->have_end || !v->have_module || !v->have_memory)
    return sp_error_new("snapshot: incomplete (missing the %s chunk)", !v->have_module ? "module" : !v->have_memory ? "memory" : "end");
  return check_view(v);
}

/* ---- identity checks: nothing is changed until all pass ---- */

static int grant_of(sp_actor_t *a, const snap_blob_ref *r) {
  for (int i = 0; i < a->blobs.count; i++)
    if (strlen(a->blobs.blobs[i].name) == r->name_len && !memcmp(a->blobs.blobs[i].name, r->name, r->name_len)) return i;
  return -1;
}

static bool holds(const sp_range *set, uint32_t n, sp_range r) {
  for (uint32_t i = 0; i < n; i++)
    if (set[i].addr == r.addr && set[i].len == r.len) return true;
  return false;
}

/* The first of set[0, n) that r overlaps (without being it, when same_kind:
 * a range of the same kind may be declared again), or -1. */
static int clash(const sp_range *set, uint32_t n, sp_range r, bool same_kind) {
  for (uint32_t i = 0; i < n; i++)
    if (overlap(set[i], r) && !(same_kind && set[i].addr == r.addr && set[i].len == r.len)) return (int)i;
  return -1;
}

/* The snapshot's ranges join those the actor already declares (restoring
 * re-declares a range it holds): what results must obey the rules of
 * freeze and device_local, and fit the tables. */
static sp_error_t *check_ranges_fit(const sp_actor_t *a, const snap_view *v) {
  uint32_t new_frozen = 0, new_local = 0;
  for (uint32_t i = 0; i < v->n_frozen; i++) {
    sp_range r = v->frozen_r[i];
    int f = clash(a->frozen, a->n_frozen, r, true), l = clash(a->device_local, a->n_device_local, r, false);
    if (f >= 0 || l >= 0)
      return sp_error_new("snapshot: frozen range %u [0x%" PRIx64 ", +%" PRIu64 ") overlaps this actor's %s range "
                          "[0x%" PRIx64 ", +%" PRIu64 ") (restore into a fresh actor)", i, r.addr, r.len,
                          f >= 0 ? "frozen" : "device-local", f >= 0 ? a->frozen[f].addr : a->device_local[l].addr,
                          f >= 0 ? a->frozen[f].len : a->device_local[l].len);
    new_frozen += !holds(a->frozen, a->n_frozen, r);
  }
  for (uint32_t i = 0; i < v->n_local; i++) {
    sp_range r = v->local_r[i];
    int f = clash(a->frozen, a->n_frozen, r, false), l = clash(a->device_local, a->n_device_local, r, true);
    if (f >= 0 || l >= 0)
      return sp_error_new("snapshot: device-local range %u [0x%" PRIx64 ", +%" PRIu64 ") overlaps this actor's %s range "
                          "[0x%" PRIx64 ", +%" PRIu64 ") (restore into a fresh actor)", i, r.addr, r.len,
                          f >= 0 ? "frozen" : "device-local", f >= 0 ? a->frozen[f].addr : a->device_local[l].addr,
                          f >= 0 ? a->frozen[f].len : a->device_local[l].len);
    new_local += !holds(a->device_local, a->n_device_local, r);
  }
  if (a->n_frozen + new_frozen > SP_MAX_FROZEN || a->n_device_local + new_local > SP_MAX_DEVICE_LOCAL)
    return sp_error_new("snapshot: with this actor's own, more than %d frozen or %d device-local ranges (restore into a "
                        "fresh actor)", SP_MAX_FROZEN, SP_MAX_DEVICE_LOCAL);
  return NULL;
}

static sp_error_t *check_identity(sp_actor_t *a, const snap_view *v) {
  if (v->module_hash != a->module_hash)
    return sp_error_new("snapshot: made by a different guest module (hash %016" PRIx64 ", this actor runs %016" PRIx64 ")",
                        v->module_hash, a->module_hash);
  if (!a->region) return sp_error_new("snapshot: the actor has no linear memory");
  if (a->region->committed > v->memory)
    return sp_error_new("snapshot: the actor already has %zu bytes of memory, more than the snapshot's %" PRIu64
                        " (restore into a fresh actor)", a->region->committed, v->memory);
  if (v->memory > a->region->reserved || (a->region->limit && v->memory > a->region->limit))
    return sp_error_new("snapshot: %" PRIu64 " bytes of memory exceed this actor's limit", v->memory);
  for (int i = 0; i < v->n_refs; i++) {
    const snap_blob_ref *r = &v->refs[i];
    int h = grant_of(a, r);
    if (h < 0) return sp_error_new("snapshot: it needs a file granted as \"%.*s\"; this actor has none", r->name_len, r->name);
    sp_blob *blob = &a->blobs.blobs[h];
    uint64_t hash;
    sp_error_t *err = sp_blob_content_hash(blob, &hash);
    if (err) return err;
    if (blob->size != r->file_size || hash != r->content_hash)
      return sp_error_new("snapshot: the file granted as \"%s\" is not the one it was made with (model mismatch)", blob->name);
    if (r->file_offset > blob->size || r->length > blob->size - r->file_offset)
      return sp_error_new("snapshot: its range of \"%s\" lies outside the file", blob->name);
  }
  return check_ranges_fit(a, v);
}

/* ---- applying ---- */

static bool covered_by_ref(const snap_view *v, uint64_t addr, uint64_t len) {
  for (int i = 0; i < v->n_refs; i++)
    if (addr < v->refs[i].guest_addr + v->refs[i].length && v->refs[i].guest_addr < addr + len) return true;
  return false;
}

/* Where the piece of [at, end) starting at `at` stops: at the edge of the
 * device-local range holding `at` (*inside true), or at the next one. */
static uint64_t local_piece_end(const sp_actor_t *a, uint64_t at, uint64_t end, bool *inside) {
  uint64_t stop = end;
  *inside = false;
  for (uint32_t i = 0; i < a->n_device_local; i++) {
    const sp_range *r = &a->device_local[i];
    if (at >= r->addr && at < r->addr + r->len) {
      *inside = true;
      return r->addr + r->len < end ? r->addr + r->len : end;
    }
    if (r->addr > at && r->addr < stop) stop = r->addr;
  }
  return stop;
}

/* Zeroes guest bytes: madvise drops whole pages on the CPU backend (the
 * kernel refills zeros); pinned pages (device backends) are written. */
static void zero_host(sp_actor_t *a, uint64_t addr, uint64_t len, bool drop) {
  if (drop) sp_region_zero(a->region, addr, len);
  else memset(a->region->base + addr, 0, len);
}

/* Guest bytes [addr, addr + len) become src's (zeros when src is NULL).
 * Copies go to guest memory (on several threads when big), and pieces
 * inside a device-local range then to the backend's mirror (flush: from
 * pinned memory on CUDA, the fast way). Zeros inside a device-local range
 * go to the mirror alone where there is one (the guest's copy is not
 * authoritative until sync), elsewhere to guest memory. */
static sp_error_t *write_bytes(sp_actor_t *a, uint64_t addr, const uint8_t *src, uint64_t len, bool drop) {
  if (src) sp_memcpy_parallel(a->region->base + addr, src, len);
  for (uint64_t at = addr, end = addr + len; at < end;) {
    bool inside, done = false;
    uint64_t stop = local_piece_end(a, at, end, &inside);
    sp_error_t *err = !inside ? NULL
                      : src   ? sp_backend_flush(a->rt->backend, a->binding, at, stop - at)
                              : sp_backend_local_zero(a->rt->backend, a->binding, at, stop - at, &done);
    if (err) return err;
    if (!src && !done) zero_host(a, at, stop - at, drop);
    at = stop;
  }
  return NULL;
}

/* Zeroes every page that the snapshot neither writes nor maps: resident
 * ones in guest memory, and all of them inside device-local ranges (whose
 * mirrors may hold anything). */
static sp_error_t *zero_unsaved(sp_actor_t *a, const snap_view *v, const uint8_t *saved) {
  sp_region *r = a->region;
  size_t host_page = sp_page_size(), n_host = r->committed / host_page;
  unsigned char *resident = malloc(n_host ? n_host : 1);
  if (!resident) return sp_error_new("out of memory");
  if (mincore(r->base, r->committed, resident)) memset(resident, 1, n_host);
  for (uint32_t k = 0; k < a->n_device_local; k++)
    for (uint64_t p = a->device_local[k].addr / host_page;
         p * host_page < a->device_local[k].addr + a->device_local[k].len && p < n_host; p++)
      resident[p] = 1;
  bool drop = !strcmp(sp_backend_name(a->rt->backend), "cpu");
  sp_error_t *err = NULL;
  for (size_t i = 0; i < n_host && !err; i++) {
    uint64_t addr = (uint64_t)i * host_page, wasm_page = addr / SP_SNAP_PAGE;
    if (!(resident[i] & 1) || saved[wasm_page] || covered_by_ref(v, addr, host_page)) continue;
    size_t j = i + 1;
    while (j < n_host && (resident[j] & 1) && !saved[(uint64_t)j * host_page / SP_SNAP_PAGE] &&
           !covered_by_ref(v, (uint64_t)j * host_page, host_page))
      j++;
    err = write_bytes(a, addr, NULL, (j - i) * host_page, drop);
    i = j - 1;
  }
  free(resident);
  return err;
}

/* Existing file mappings become plain zero memory; then each referenced
 * range gets the file's bytes again: mapped (pristine page-cache pages),
 * or read, for ranges that were read or on a backend that cannot map
 * files. The backend hears of the change before and after (a CUDA binding
 * unpins what a mapping will cover and pins what is anonymous again; the
 * same file at the same place changes nothing there). */
static sp_error_t *restore_mappings(sp_actor_t *a, const snap_view *v) {
  sp_region *r = a->region;
  bool can_map = !sp_backend_caps_of(a->rt->backend).no_file_maps;
  sp_file_range next[MAX_REFS];
  uint32_t n_next = 0;
  for (int i = 0; i < v->n_refs; i++)
    if (can_map && !v->refs[i].read) next[n_next++] = (sp_file_range){v->refs[i].guest_addr, v->refs[i].length, -1, 0};
  sp_error_t *err = sp_actor_file_ranges_tell(a, next, n_next, false);
  if (err) return err;
  for (int i = 0; i < a->blobs.n_maps && !err; i++) {
    const sp_blob_mapping *m = &a->blobs.maps[i];
    if (m->read) continue; /* anonymous memory already */
    if (!sp_blob_unmap(&a->blobs, r, m)) err = sp_error_new("restore: cannot unmap a file range: %s", strerror(errno));
  }
  if (!err) a->blobs.n_maps = 0;
  char msg[256];
  for (int i = 0; i < v->n_refs && !err; i++) {
    const snap_blob_ref *ref = &v->refs[i];
    int handle = grant_of(a, ref);
    if (can_map && !ref->read) {
      int32_t st = sp_blob_map(&a->blobs, r, handle, ref->file_offset, ref->guest_addr, ref->length, msg, sizeof msg);
      if (st) err = sp_error_new("restore: %s", msg);
    } else {
      int64_t got = sp_blob_read(&a->blobs, r, handle, ref->file_offset, ref->guest_addr, ref->length, msg, sizeof msg);
      if (got != (int64_t)ref->length) err = sp_error_new("restore: cannot read the granted file back: %s", got < 0 ? msg : "short read");
    }
  }
  sp_error_t *after = sp_actor_file_ranges_tell(a, NULL, 0, true); /* the layout that stands, even after an error */
  if (!err) return after;
  sp_error_free(after);
  return err;
}

static sp_error_t *restore_globals(sp_actor_t *a, const snap_view *v) {
  if (!v->globals || v->globals_len < 4) return NULL; /* no pointer arithmetic on NULL */
  const uint8_t *p = v->globals, *end = v->globals + v->globals_len;
  uint32_t count = 0;
  memcpy(&count, p, 4), p += 4;
  for (uint32_t i = 0; i < count; i++) {
    uint16_t nl;
    if (end - p < 2) return sp_error_new("snapshot: the globals chunk is truncated");
    memcpy(&nl, p, 2);
    if (end - p < 2 + nl + 9) return sp_error_new("snapshot: the globals chunk is truncated");
    const char *name = (const char *)p + 2;
    uint8_t kind = p[2 + nl];
    uint64_t bits = rd64(p + 3 + nl);
    p += 2 + nl + 9;
    wasmtime_extern_t item;
    if (!wasmtime_instance_export_get(a->context, &a->instance, name, nl, &item) || item.kind != WASMTIME_EXTERN_GLOBAL)
      return sp_error_new("snapshot: global \"%.*s\" is not exported by this module", nl, name);
    wasmtime_val_t val = {0};
    if (kind == 0) val.kind = WASMTIME_I32, val.of.i32 = (int32_t)(uint32_t)bits;
    else if (kind == 1) val.kind = WASMTIME_I64, val.of.i64 = (int64_t)bits;
    else if (kind == 2) val.kind = WASMTIME_F32, memcpy(&val.of.f32, &bits, 4);
    else val.kind = WASMTIME_F64, memcpy(&val.of.f64, &bits, 8);
    wasmtime_error_t *werr = wasmtime_global_set(a->context, &item.of.global, &val);
    if (werr) {
      wasmtime_error_delete(werr);
      return sp_error_new("snapshot: global \"%.*s\" has another type or is immutable here", nl, name);
    }
  }
  return NULL;
}

/* The identity of a restored frozen range (range_identity.h), proved by
 * how it was restored rather than by reading it: restore_mappings has just
 * put the file's bytes there, so a range inside one reference, with no
 * saved page on top of it, holds exactly those bytes. */
static uint64_t restored_identity(sp_actor_t *a, const snap_view *v, sp_range f) {
  if (!sp_backend_caps_of(a->rt->backend).shares_frozen) return 0;
  for (uint64_t i = 0; i < v->n_runs; i++) {
    page_run run = run_at(v, i);
    if (run.addr < f.addr + f.len && f.addr < run.addr + run.len) return 0;
  }
  /* Exactly one reference may touch the range: references are applied in
   * order, so a second one (a crafted file) would have overwritten part. */
  const snap_blob_ref *cover = NULL;
  for (int i = 0; i < v->n_refs; i++) {
    const snap_blob_ref *r = &v->refs[i];
    if (f.addr >= r->guest_addr + r->length || r->guest_addr >= f.addr + f.len) continue;
    if (cover || f.addr < r->guest_addr || f.addr + f.len > r->guest_addr + r->length) return 0;
    cover = r;
  }
  int handle = cover ? grant_of(a, cover) : -1;
  return handle < 0 ? 0 : sp_blob_bytes_identity(&a->blobs.blobs[handle], cover->file_offset + (f.addr - cover->guest_addr), f.len);
}

static sp_error_t *restore_frozen(sp_actor_t *a, const snap_view *v) {
  for (uint32_t i = 0; i < v->n_frozen; i++) {
    sp_range f = v->frozen_r[i]; /* checked in check_view and check_ranges_fit */
    bool known = holds(a->frozen, a->n_frozen, f);
    if (!known && a->n_frozen == SP_MAX_FROZEN) return sp_error_new("snapshot: more than %d frozen ranges", SP_MAX_FROZEN);
    /* The device copy must match the restored bytes. Freezing a range the
     * actor already holds re-declares it: the backend copies it again,
     * unless its copy (or another actor's) already holds that identity. */
    sp_error_t *err = sp_backend_freeze(a->rt->backend, a->binding, f.addr, f.len, restored_identity(a, v, f));
    if (err) return err;
    if (!known) a->frozen[a->n_frozen++] = f;
  }
  return NULL;
}

/* Declares the snapshot's device-local ranges the actor does not declare
 * yet (an actor restored without running the guest's own setup); every
 * range's mirror is then written with the restored bytes (write_bytes). */
static sp_error_t *restore_device_local(sp_actor_t *a, const snap_view *v) {
  for (uint32_t i = 0; i < v->n_local; i++) {
    sp_range r = v->local_r[i];
    if (holds(a->device_local, a->n_device_local, r)) continue;
    sp_error_t *err = sp_abi_device_local_declare(a, r.addr, r.len);
    if (err) return err;
  }
  return NULL;
}

static sp_error_t *restore_annotations(sp_actor_t *a, const snap_view *v) {
  sp_annotation_table fresh = {0};
  fresh.items = calloc(v->n_annots ? v->n_annots : 1, sizeof *fresh.items);
  if (!fresh.items) return sp_error_new("out of memory");
  if (v->n_annots) memcpy(fresh.items, v->annots, v->n_annots * sizeof *fresh.items);
  fresh.count = fresh.cap = v->n_annots;
  sp_annotation_table_free(&a->annotations);
  a->annotations = fresh;
  return NULL;
}

static sp_error_t *apply(sp_actor_t *a, const snap_view *v, sp_snapshot_stats *stats) {
  if (v->memory > a->region->committed) {
    uint64_t prev;
    wasmtime_error_t *werr = wasmtime_memory_grow(a->context, &a->memory, (v->memory - a->region->committed) / SP_SNAP_PAGE, &prev);
    if (werr) {
      wasmtime_error_delete(werr);
      return sp_error_new("restore: cannot grow memory to %" PRIu64 " bytes", v->memory);
    }
  }
  uint8_t *saved = calloc(v->memory / SP_SNAP_PAGE + 1, 1);
  if (!saved) return sp_error_new("out of memory");
  for (uint64_t i = 0; i < v->n_runs; i++) {
    page_run run = run_at(v, i);
    memset(saved + run.addr / SP_SNAP_PAGE, 1, run.len / SP_SNAP_PAGE);
  }
  sp_error_t *err = restore_mappings(a, v);
  /* Declared before any byte is written: bytes inside a device-local range
   * then go straight to its mirror (write_bytes). */
  if (!err) err = restore_device_local(a, v);
  if (!err) err = zero_unsaved(a, v, saved);
  free(saved);
  uint64_t pages = 0;
  for (uint64_t i = 0; !err && i < v->n_runs; i++) {
    page_run run = run_at(v, i);
    err = write_bytes(a, run.addr, run.bytes, run.len, false);
    pages += run.len / SP_SNAP_PAGE;
  }
  if (!err) err = restore_globals(a, v);
  if (!err) err = restore_frozen(a, v);
  if (!err) err = restore_annotations(a, v);
  if (!err && stats) stats->bytes = v->size, stats->memory_bytes = v->memory, stats->pages_written = pages;
  return err;
}

sp_error_t *sp_actor_restore(sp_actor_t *actor, const char *path, sp_snapshot_stats *stats) {
  if (!actor || !path) return sp_error_new("sp_actor_restore: NULL argument");
  sp_snapshot_file *f = NULL;
  double t0 = sp_now_ms();
  sp_error_t *err = sp_snapshot_file_open(path, &f);
  if (err) return err;
  err = check_identity(actor, &f->view);
  double t1 = sp_now_ms();
  if (!err) err = apply(actor, &f->view, stats);
  if (!err && stats) stats->verify_ms = t1 - t0, stats->apply_ms = sp_now_ms() - t1;
  sp_snapshot_file_close(f);
  return err ? sp_error_wrap(err, "%s", path) : NULL;
}

/* ---- offline access, for tools (samepage kv export) ---- */

/* Takes ownership of a view whose bytes are set, parses it, and hands out
 * the file or frees it. */
static sp_error_t *open_view(sp_snapshot_file *f, const char *what, sp_snapshot_file **out) {
  sp_error_t *err = parse_file(&f->view);
  if (err) {
    sp_snapshot_file_close(f);
    return sp_error_wrap(err, "%s", what);
  }
  *out = f;
  return NULL;
}

sp_error_t *sp_snapshot_file_open(const char *path, sp_snapshot_file **out) {
  /* A regular file, opened without blocking (a FIFO would hang us), and
   * not empty (a /proc file reports size 0). */
  int fd;
  struct stat st;
  sp_error_t *err = sp_open_regular(path, SP_OPEN_NONEMPTY, &fd, &st);
  if (err) return sp_error_wrap(err, "snapshot");
  sp_snapshot_file *f = calloc(1, sizeof *f);
  if (!f) return close(fd), sp_error_new("out of memory");
  f->view.size = (uint64_t)st.st_size;
  /* Populated up front: every byte is read for its checksum anyway, and
   * one populate costs far less than a fault per page. */
  f->view.file = f->view.size ? mmap(NULL, f->view.size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0) : NULL;
  close(fd);
  f->mapped = true;
  if (f->view.file == MAP_FAILED) {
    f->view.file = NULL;
    sp_snapshot_file_close(f);
    return sp_error_wrap(sp_error_new("cannot map it: %s", strerror(errno)), "%s", path);
  }
  return open_view(f, path, out);
}

sp_error_t *sp_snapshot_file_open_bytes(const uint8_t *data, size_t size, sp_snapshot_file **out) {
  if (!data && size) return sp_error_new("sp_snapshot_file_open_bytes: NULL data");
  sp_snapshot_file *f = calloc(1, sizeof *f);
  if (!f) return sp_error_new("out of memory");
  f->view.file = data, f->view.size = size;
  return open_view(f, "snapshot in memory", out);
}

void sp_snapshot_file_close(sp_snapshot_file *f) {
  if (!f) return;
  if (f->mapped && f->view.file) munmap((void *)f->view.file, f->view.size);
  free(f->view.runs);
  free(f->view.annots);
  free(f);
}

bool sp_snapshot_file_annotation(const sp_snapshot_file *f, const char *name, sp_tensor *out) {
  for (uint32_t i = 0; i < f->view.n_annots; i++)
    if (!strcmp(f->view.annots[i].name, name)) {
      *out = f->view.annots[i].tensor;
      return true;
    }
  return false;
}

sp_error_t *sp_snapshot_file_read(const sp_snapshot_file *f, uint64_t addr, uint64_t len, uint8_t *dst) {
  const snap_view *v = &f->view;
  if (addr > v->memory || len > v->memory - addr) return sp_error_new("snapshot: bytes [0x%" PRIx64 ", +%" PRIu64 ") lie outside its memory", addr, len);
  if (covered_by_ref(v, addr, len)) return sp_error_new("snapshot: those bytes belong to a referenced file, not stored");
  memset(dst, 0, len); /* pages not stored are zero */
  for (uint64_t i = 0; i < v->n_runs; i++) {
    page_run run = run_at(v, i);
    uint64_t end = run.addr + run.len, lo = addr > run.addr ? addr : run.addr, hi = addr + len < end ? addr + len : end;
    if (lo < hi) memcpy(dst + (lo - addr), run.bytes + (lo - run.addr), hi - lo);
  }
  return NULL;
}

uint64_t sp_snapshot_file_blob_hash(const sp_snapshot_file *f, const char *grant) {
  for (int i = 0; i < f->view.n_refs; i++)
    if (strlen(grant) == f->view.refs[i].name_len && !memcmp(grant, f->view.refs[i].name, f->view.refs[i].name_len))
      return f->view.refs[i].content_hash;
  return 0;
}
