/* test_resident_cache.c: the CUDA backend's shared device copies
 * (src/backend/cuda/resident_cache.c) with host memory as the "device":
 * one copy per identity, references, copy-on-flush, restore re-declaration,
 * short memory, and the residency stats they keep. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/resident_cache.h"
#include "check.h"

#define LEN 4096u
#define ID_A 0x1111u
#define ID_B 0x2222u

/* ---- a fake device: malloc, counted, with an allocation budget ---- */

typedef struct fake_device {
  int allocs, frees, budget; /* budget: allocations left (-1: unlimited) */
  int drops;                 /* derived data dropped */
} fake_device;

/* Derived data (repacked weights on CUDA) is a malloc'd marker here. */
static void fake_drop(void *ctx, sp_resident_copy *copy) {
  ((fake_device *)ctx)->drops++;
  free(copy->derived);
  copy->derived = NULL;
}

static void *fake_alloc(void *ctx, uint64_t len) {
  fake_device *d = ctx;
  if (d->budget == 0) return NULL;
  if (d->budget > 0) d->budget--;
  d->allocs++;
  return malloc(len);
}

static void fake_free(void *ctx, void *dev) {
  ((fake_device *)ctx)->frees++;
  free(dev);
}

static bool fake_copy(void *ctx, void *dst, const void *src, uint64_t len) {
  memcpy(dst, src, len);
  return true;
}

/* ---- a fake binding: its guest memory, uploads counted ---- */

typedef struct fake_guest {
  uint8_t mem[LEN];
  int uploads;
} fake_guest;

static sp_error_t *fake_upload(void *ctx, void *dev, uint64_t addr, uint64_t len) {
  fake_guest *g = ctx;
  g->uploads++;
  memcpy(dev, g->mem + addr, len);
  return NULL;
}

typedef struct fixture {
  fake_device dev;
  pthread_mutex_t mu;
  sp_residency_stats stats;
  sp_resident_cache cache;
  fake_guest a, b;
  sp_resident_upload up_a, up_b;
} fixture;

static void setup(fixture *f) {
  memset(f, 0, sizeof *f);
  f->dev.budget = -1;
  pthread_mutex_init(&f->mu, NULL);
  sp_resident_device d = {&f->dev, fake_alloc, fake_free, fake_copy, fake_drop, NULL, NULL};
  sp_resident_cache_init(&f->cache, d, &f->mu, &f->stats);
  memset(f->a.mem, 'w', LEN), memset(f->b.mem, 'w', LEN); /* both actors loaded the same weights */
  f->up_a = (sp_resident_upload){&f->a, fake_upload};
  f->up_b = (sp_resident_upload){&f->b, fake_upload};
}

static void teardown(fixture *f) {
  CHECK(f->dev.allocs == f->dev.frees, "every device allocation freed (%d allocs, %d frees)", f->dev.allocs, f->dev.frees);
  CHECK(f->stats.bytes == 0 && f->stats.shared_bytes == 0, "stats back to zero (%llu, %llu)",
        (unsigned long long)f->stats.bytes, (unsigned long long)f->stats.shared_bytes);
  CHECK(f->cache.n == 0, "no published copy left (%zu)", f->cache.n);
  sp_resident_cache_deinit(&f->cache);
  pthread_mutex_destroy(&f->mu);
}

static bool holds(const sp_resident_copy *c, uint8_t byte) {
  for (uint32_t i = 0; i < LEN; i++)
    if (((const uint8_t *)c->dev)[i] != byte) return false;
  return true;
}

static void test_same_identity_shares(void) {
  fixture f;
  setup(&f);
  sp_resident_copy *ca = NULL, *cb = NULL;
  CHECK(!sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, ID_A, &ca) && ca, "first freeze copies");
  CHECK(!sp_resident_freeze(&f.cache, &f.up_b, 0, LEN, ID_A, &cb) && cb, "second freeze");
  CHECK(ca == cb && ca->refs == 2, "one copy, two holders (refs %u)", ca ? ca->refs : 0);
  CHECK(f.a.uploads == 1 && f.b.uploads == 0, "one upload (%d, %d)", f.a.uploads, f.b.uploads);
  CHECK(f.stats.bytes == LEN && f.stats.shared_bytes == LEN && f.stats.shared_hits == 1,
        "stats: bytes %llu shared %llu hits %llu", (unsigned long long)f.stats.bytes,
        (unsigned long long)f.stats.shared_bytes, (unsigned long long)f.stats.shared_hits);
  sp_resident_release(&f.cache, ca);
  CHECK(f.dev.frees == 0 && f.stats.shared_bytes == 0 && f.stats.bytes == LEN, "one release keeps the copy");
  sp_resident_release(&f.cache, cb);
  CHECK(f.dev.frees == 1, "the last release frees it");
  teardown(&f);
}

static void test_unknown_or_other_identity_is_private(void) {
  fixture f;
  setup(&f);
  sp_resident_copy *c0 = NULL, *c1 = NULL, *ca = NULL, *cb = NULL;
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, 0, &c0);
  sp_resident_freeze(&f.cache, &f.up_b, 0, LEN, 0, &c1);
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, ID_A, &ca);
  sp_resident_freeze(&f.cache, &f.up_b, 0, LEN, ID_B, &cb);
  CHECK(c0 != c1 && ca != cb && c0 != ca && f.a.uploads + f.b.uploads == 4, "four copies");
  CHECK(f.stats.shared_hits == 0 && f.stats.bytes == 4 * LEN, "nothing shared");
  sp_resident_copy *again = NULL;
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN / 2, ID_A, &again); /* same id, other length */
  CHECK(again && again != ca, "a different length never matches");
  sp_resident_release(&f.cache, again);
  sp_resident_release(&f.cache, c0), sp_resident_release(&f.cache, c1);
  sp_resident_release(&f.cache, ca), sp_resident_release(&f.cache, cb);
  teardown(&f);
}

static void test_flush_copies_first(void) {
  fixture f;
  setup(&f);
  sp_resident_copy *ca = NULL, *cb = NULL;
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, ID_A, &ca);
  sp_resident_freeze(&f.cache, &f.up_b, 0, LEN, ID_A, &cb);
  /* actor b rewrites its first half and flushes it */
  memset(f.b.mem, 'x', LEN / 2);
  sp_resident_copy *shared = cb;
  CHECK(!sp_resident_refresh(&f.cache, &f.up_b, &cb, 0, LEN, 0, LEN / 2, 0), "flush");
  CHECK(cb != shared && ca == shared, "the flushing actor got its own copy");
  CHECK(holds(ca, 'w'), "the other actor still reads the weights");
  bool mine = true;
  for (uint32_t i = 0; i < LEN; i++) mine = mine && ((uint8_t *)cb->dev)[i] == (i < LEN / 2 ? 'x' : 'w');
  CHECK(mine, "its copy has the flushed half new and the rest as before");
  CHECK(ca->refs == 1 && cb->refs == 1 && cb->identity == 0, "no longer shared; the private copy has no name");
  CHECK(f.stats.bytes == 2 * LEN && f.stats.shared_bytes == 0, "two copies held now");
  /* a third actor freezing the identity still gets the untouched weights */
  sp_resident_copy *cc = NULL;
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, ID_A, &cc);
  CHECK(cc == ca, "the published copy is still the weights'");
  sp_resident_release(&f.cache, cc);
  /* the sole holder of a published copy flushes: written in place, and
   * withdrawn, so that nobody else can take it under the old name */
  sp_resident_copy *before = ca;
  memset(f.a.mem, 'y', 16);
  sp_resident_refresh(&f.cache, &f.up_a, &ca, 0, LEN, 0, 16, 0);
  CHECK(ca == before && ca->identity == 0 && f.cache.n == 0, "sole holder: in place, unpublished");
  sp_resident_copy *cd = NULL;
  int uploads = f.a.uploads;
  memset(f.a.mem, 'w', LEN);
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, ID_A, &cd);
  CHECK(cd != ca && f.a.uploads == uploads + 1 && holds(cd, 'w'), "a later freeze of the name uploads afresh");
  sp_resident_release(&f.cache, ca), sp_resident_release(&f.cache, cb), sp_resident_release(&f.cache, cd);
  teardown(&f);
}

static void test_restore_redeclares(void) {
  fixture f;
  setup(&f);
  sp_resident_copy *ca = NULL, *cb = NULL;
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, ID_A, &ca);
  /* restore into a: same bytes, same name: nothing copied */
  sp_resident_copy *before = ca;
  int uploads = f.a.uploads;
  sp_resident_refresh(&f.cache, &f.up_a, &ca, 0, LEN, 0, LEN, ID_A);
  CHECK(ca == before && f.a.uploads == uploads && f.stats.shared_hits == 1, "same identity: kept, counted as a hit");
  /* b froze an unnamed copy; a restore names its bytes: it takes a's */
  sp_resident_freeze(&f.cache, &f.up_b, 0, LEN, 0, &cb);
  sp_resident_refresh(&f.cache, &f.up_b, &cb, 0, LEN, 0, LEN, ID_A);
  CHECK(cb == ca && ca->refs == 2 && f.stats.bytes == LEN, "restore took the other actor's copy, freed its own");
  /* a restore of unnamed bytes into a shared holder: copy of its own, uploaded */
  memset(f.b.mem, 'z', LEN);
  uploads = f.b.uploads;
  sp_resident_refresh(&f.cache, &f.up_b, &cb, 0, LEN, 0, LEN, 0);
  CHECK(cb != ca && holds(cb, 'z') && holds(ca, 'w') && f.b.uploads == uploads + 1, "unnamed restore: private, fresh");
  /* a restore of named bytes nobody holds: uploaded and published */
  memset(f.b.mem, 'q', LEN);
  sp_resident_refresh(&f.cache, &f.up_b, &cb, 0, LEN, 0, LEN, ID_B);
  CHECK(cb->identity == ID_B && holds(cb, 'q'), "published under the new name");
  sp_resident_copy *cc = NULL;
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, ID_B, &cc);
  CHECK(cc == cb, "and found by it");
  sp_resident_release(&f.cache, cc);
  sp_resident_release(&f.cache, ca), sp_resident_release(&f.cache, cb);
  teardown(&f);
}

static void test_short_memory(void) {
  fixture f;
  setup(&f);
  sp_resident_copy *ca = NULL, *cb = NULL, *cz = NULL;
  f.dev.budget = 1;
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, ID_A, &ca);
  sp_resident_freeze(&f.cache, &f.up_b, 0, LEN, ID_A, &cb);
  CHECK(ca && cb == ca, "a hit needs no device memory");
  sp_resident_freeze(&f.cache, &f.up_b, 0, LEN, ID_B, &cz);
  CHECK(!cz, "a miss without memory: zero-copy");
  /* copy-on-flush without memory for the copy: the flusher reads guest memory */
  sp_resident_refresh(&f.cache, &f.up_b, &cb, 0, LEN, 0, 8, 0);
  CHECK(!cb && ca->refs == 1 && holds(ca, 'w'), "flusher falls back to zero-copy; the other keeps its copy");
  sp_resident_release(&f.cache, ca);
  teardown(&f);
}

/* Both actors miss at once and both upload: the one to publish second
 * shares the first one's copy and drops its own. The race is staged by
 * an upload of a's that runs b's whole freeze in the middle. */
typedef struct racing_upload {
  fixture *f;
  sp_resident_copy *b_got;
} racing_upload;

static sp_error_t *upload_racing_b(void *ctx, void *dev, uint64_t addr, uint64_t len) {
  racing_upload *r = ctx;
  sp_error_t *err = sp_resident_freeze(&r->f->cache, &r->f->up_b, addr, len, ID_A, &r->b_got);
  return err ? err : fake_upload(&r->f->a, dev, addr, len);
}

static void test_racing_publish(void) {
  fixture f;
  setup(&f);
  racing_upload race = {&f, NULL};
  sp_resident_upload up = {&race, upload_racing_b};
  sp_resident_copy *ca = NULL;
  CHECK(!sp_resident_freeze(&f.cache, &up, 0, LEN, ID_A, &ca), "racing freeze");
  CHECK(ca && ca == race.b_got && ca->refs == 2, "a took b's published copy");
  CHECK(f.a.uploads == 1 && f.b.uploads == 1 && f.dev.allocs == 2 && f.dev.frees == 1, "a's upload was dropped");
  CHECK(f.stats.bytes == LEN && f.stats.shared_bytes == LEN && f.cache.n == 1, "one copy held");
  sp_resident_release(&f.cache, ca), sp_resident_release(&f.cache, race.b_got);
  teardown(&f);
}

/* What was derived from a copy's bytes goes when they change in place or
 * the copy goes, and stays while another actor's flush only copies it. */
static void test_derived_data(void) {
  fixture f;
  setup(&f);
  sp_resident_copy *ca = NULL, *cb = NULL;
  sp_resident_freeze(&f.cache, &f.up_a, 0, LEN, ID_A, &ca);
  sp_resident_freeze(&f.cache, &f.up_b, 0, LEN, ID_A, &cb);
  ca->derived = malloc(1);
  memset(f.b.mem, 'x', 8);
  sp_resident_refresh(&f.cache, &f.up_b, &cb, 0, LEN, 0, 8, 0); /* copy-on-flush */
  CHECK(f.dev.drops == 0 && ca->derived && !cb->derived, "a copy-on-flush keeps the shared copy's derived data");
  memset(f.a.mem, 'y', 8);
  sp_resident_refresh(&f.cache, &f.up_a, &ca, 0, LEN, 0, 8, 0); /* sole holder: in place */
  CHECK(f.dev.drops == 1 && !ca->derived, "bytes changed in place: derived data dropped");
  cb->derived = malloc(1);
  sp_resident_release(&f.cache, cb);
  CHECK(f.dev.drops == 2, "released with its copy");
  sp_resident_release(&f.cache, ca);
  teardown(&f);
}

/* ---- across processes (process isolation, vmm.h): two caches, one per
 * "process"; exported memory is refcounted as the driver does: alive while
 * any process maps it ---- */

#define MAX_BUFS 8
static struct {
  void *mem;
  int refs, fd;
} bufs[MAX_BUFS];

static int buf_of(const void *mem) {
  for (int i = 0; i < MAX_BUFS; i++)
    if (bufs[i].refs && bufs[i].mem == mem) return i;
  return -1;
}

static void *shared_alloc(void *ctx, uint64_t len) {
  void *mem = fake_alloc(ctx, len);
  for (int i = 0; mem && i < MAX_BUFS; i++)
    if (!bufs[i].refs) {
      bufs[i].mem = mem, bufs[i].refs = 1, bufs[i].fd = -1;
      break;
    }
  return mem;
}

static void shared_free(void *ctx, void *dev) {
  ((fake_device *)ctx)->frees++;
  int i = buf_of(dev);
  if (i >= 0 && --bufs[i].refs == 0) free(bufs[i].mem);
}

static int shared_export(void *ctx, void *dev) {
  int i = buf_of(dev);
  if (i < 0) return -1;
  bufs[i].fd = 100 + i; /* a stand-in descriptor */
  return bufs[i].fd;
}

static void *shared_import(void *ctx, int fd, uint64_t len) {
  for (int i = 0; i < MAX_BUFS; i++)
    if (bufs[i].refs && bufs[i].fd == fd) {
      ((fake_device *)ctx)->allocs++; /* a mapping this process must give back */
      bufs[i].refs++;
      return bufs[i].mem;
    }
  return NULL;
}

static void setup_process(fixture *f) {
  setup(f);
  f->cache.device = (sp_resident_device){&f->dev, shared_alloc, shared_free, fake_copy, fake_drop, shared_export,
                                         shared_import};
}

static void test_across_processes(void) {
  fixture pa, pb; /* process A made the copy; process B maps it */
  setup_process(&pa), setup_process(&pb);
  sp_resident_copy *ca = NULL, *cb = NULL, *cc = NULL;
  int fd = -1, fd_b = -1, none = -1;
  CHECK(!sp_resident_freeze_shared(&pa.cache, &pa.up_a, 0, LEN, ID_A, -1, &fd, &ca) && ca && fd >= 0,
        "the first process uploads and exports (fd %d)", fd);
  CHECK(ca && ca->cross_process && !ca->imported && pa.a.uploads == 1, "its copy is marked shared across processes");
  CHECK(!sp_resident_freeze_shared(&pb.cache, &pb.up_a, 0, LEN, ID_A, fd, &fd_b, &cb) && cb && fd_b < 0,
        "the second process imports");
  CHECK(cb && cb->dev == ca->dev && pb.a.uploads == 0, "same memory, no upload");
  CHECK(pb.stats.bytes == 0 && pb.stats.shared_bytes == LEN && pb.stats.shared_hits == 1,
        "counted as shared there, not held (bytes %llu, shared %llu)", (unsigned long long)pb.stats.bytes,
        (unsigned long long)pb.stats.shared_bytes);
  /* B's guest rewrites the range and flushes: B gets a copy of its own. */
  memset(pb.a.mem, 'x', LEN);
  CHECK(!sp_resident_refresh(&pb.cache, &pb.up_a, &cb, 0, LEN, 0, LEN, 0) && cb && cb->dev != ca->dev && holds(cb, 'x'),
        "a flush in B gets B its own copy");
  CHECK(holds(ca, 'w'), "what A (and any other process) reads is unchanged");
  /* A flushes too: its exported copy may be mapped elsewhere, so A copies first. */
  void *exported = ca->dev;
  memset(pa.a.mem, 'y', LEN);
  CHECK(!sp_resident_refresh(&pa.cache, &pa.up_a, &ca, 0, LEN, 0, LEN, 0) && ca && ca->dev != exported &&
            holds(ca, 'y'),
        "a flush in the exporting process copies first as well");
  /* A descriptor that maps nothing: an upload instead. */
  CHECK(!sp_resident_freeze_shared(&pb.cache, &pb.up_b, 0, LEN, ID_B, 999, &none, &cc) && cc && pb.b.uploads == 1,
        "an import that fails falls back to an upload");
  if (none >= 0) CHECK(none >= 100, "and that copy is exported");
  sp_resident_release(&pa.cache, ca), sp_resident_release(&pb.cache, cb), sp_resident_release(&pb.cache, cc);
  for (int i = 0; i < MAX_BUFS; i++) CHECK(bufs[i].refs == 0, "shared buffer %d freed (refs %d)", i, bufs[i].refs);
  teardown(&pa), teardown(&pb);
}

int main(void) {
  test_same_identity_shares();
  test_unknown_or_other_identity_is_private();
  test_flush_copies_first();
  test_derived_data();
  test_restore_redeclares();
  test_short_memory();
  test_racing_publish();
  test_across_processes();
  return CHECK_DONE();
}
