/* test_range_identity.c: the names the runtime proves for frozen bytes
 * (src/runtime/range_identity.c), which decide when actors share a device copy.
 * Two grants of one file name the same bytes alike, read or mapped; another
 * file, offset or length, a written byte, or a rewritten file never do. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "runtime/range_identity.h"

#define KIB64 ((uint64_t)64 << 10)
#define FILE_BYTES (4 * KIB64 + 1000) /* not a whole number of pages */
#define AT KIB64                      /* guest address the file goes to */

typedef struct actor_like {
  sp_region *region;
  sp_blob_table blobs;
} actor_like;

static void write_file(const char *path, uint8_t salt) {
  FILE *f = fopen(path, "wb");
  for (uint64_t i = 0; i < FILE_BYTES; i++) fputc((int)((i * 31 + salt) & 0xff), f);
  fclose(f);
}

static actor_like open_actor(const char *path) {
  actor_like a = {0};
  sp_blob_grant grant = {"model", path};
  sp_error_t *err = sp_region_new(SP_REGION_DEFAULT_ALIGNMENT, 16 * KIB64, 16 * KIB64, 0, &a.region);
  if (!err) err = sp_blob_table_open(&a.blobs, &grant, 1);
  CHECK(!err, "open: %s", err ? sp_error_message(err) : "");
  sp_error_free(err);
  return a;
}

static void close_actor(actor_like *a) {
  sp_blob_table_close(&a->blobs);
  sp_region_free(a->region);
}

/* The whole file read into anonymous memory, as on CUDA. */
static actor_like reading_actor(const char *path) {
  actor_like a = open_actor(path);
  char msg[256];
  int64_t got = sp_blob_read(&a.blobs, a.region, 0, 0, AT, FILE_BYTES, msg, sizeof msg);
  CHECK(got == (int64_t)FILE_BYTES, "blob_read: %s", msg);
  return a;
}

static uint64_t id_of(actor_like *a, uint64_t addr, uint64_t len) {
  return sp_range_identity(&a->blobs, a->region, addr, len);
}

static void test_read_ranges(const char *model, const char *copy, const char *other) {
  actor_like a = reading_actor(model), b = reading_actor(model), c = reading_actor(copy), d = reading_actor(other);
  uint64_t whole = id_of(&a, AT, FILE_BYTES);
  CHECK(whole != 0, "a whole-file read is named");
  CHECK(id_of(&b, AT, FILE_BYTES) == whole, "a second grant of the same file: same name");
  CHECK(id_of(&c, AT, FILE_BYTES) != whole && id_of(&c, AT, FILE_BYTES) != 0,
        "a copy of the file in another file: a name of its own (keyed on the file, not a forgeable hash)");
  CHECK(id_of(&d, AT, FILE_BYTES) != whole, "another file: another name");
  uint64_t part = id_of(&a, AT + KIB64, KIB64);
  CHECK(part != 0 && part != whole, "a part has its own name");
  CHECK(part == id_of(&b, AT + KIB64, KIB64), "the same part of the same file: same name");
  CHECK(part == sp_blob_bytes_identity(&a.blobs.blobs[0], KIB64, KIB64), "the name is (file, offset, length)");
  CHECK(id_of(&a, AT + 2 * KIB64, KIB64) != part, "another offset: another name");
  CHECK(id_of(&a, AT + KIB64, KIB64 - 8) != part, "another length: another name");
  CHECK(id_of(&a, AT - 4096, 8192) == 0, "a range reaching outside the file's bytes: unknown");
  CHECK(id_of(&a, 0, 4096) == 0, "memory no file was read into: unknown");
  a.region->base[AT + FILE_BYTES - 1] ^= 1; /* the guest rewrote its last byte */
  CHECK(id_of(&a, AT, FILE_BYTES) == 0, "a written byte: unknown");
  CHECK(id_of(&a, AT, KIB64) != 0 && id_of(&a, AT, KIB64) == id_of(&b, AT, KIB64), "the untouched part is still named");
  a.region->base[AT + FILE_BYTES - 1] ^= 1;
  CHECK(id_of(&a, AT, FILE_BYTES) == whole, "written back: named again");
  close_actor(&a), close_actor(&b), close_actor(&c), close_actor(&d);
}

/* False (skipped) where the kernel has no /proc/self/pagemap. */
static bool test_mapped_ranges(const char *model, const char *other) {
  int pagemap = open("/proc/self/pagemap", O_RDONLY);
  if (pagemap < 0) {
    printf("SKIP: no /proc/self/pagemap: mapped ranges are never named here\n");
    return false;
  }
  close(pagemap);
  actor_like r = reading_actor(model), m = open_actor(model);
  char msg[256];
  CHECK(sp_blob_map(&m.blobs, m.region, 0, 0, AT, FILE_BYTES, msg, sizeof msg) == SP_OK, "blob_map: %s", msg);
  uint64_t whole = id_of(&m, AT, FILE_BYTES);
  CHECK(whole != 0 && whole == id_of(&r, AT, FILE_BYTES), "mapped or read, the same bytes have the same name");
  volatile uint8_t sink = m.region->base[AT + 100]; /* a read keeps the page the file's */
  (void)sink;
  CHECK(id_of(&m, AT, FILE_BYTES) == whole, "reading does not unname it");
  m.region->base[AT + 2 * KIB64 + 5] = 0x5a; /* a write makes the page private */
  CHECK(id_of(&m, AT, FILE_BYTES) == 0, "a written page: unknown");
  CHECK(id_of(&m, AT, KIB64) != 0, "the untouched part is still named");
  actor_like o = open_actor(other);
  sp_blob_table two;
  sp_blob_grant grants[2] = {{"model", model}, {"other", other}};
  sp_error_t *err = sp_blob_table_open(&two, grants, 2);
  CHECK(!err, "open two");
  sp_error_free(err);
  CHECK(sp_blob_map(&two, o.region, 0, 0, AT, FILE_BYTES, msg, sizeof msg) == SP_OK, "map model");
  CHECK(sp_blob_map(&two, o.region, 1, KIB64, AT + KIB64, KIB64, msg, sizeof msg) == SP_OK, "map other inside");
  CHECK(sp_range_identity(&two, o.region, AT, FILE_BYTES) == 0, "another file mapped into the middle: unknown");
  CHECK(sp_range_identity(&two, o.region, AT + KIB64, KIB64) != 0, "the inner mapping is named");
  sp_blob_table_close(&two);
  close_actor(&o), close_actor(&r), close_actor(&m);
  return true;
}

static void test_rewritten_file(const char *model) {
  actor_like a = reading_actor(model);
  CHECK(id_of(&a, AT, FILE_BYTES) != 0, "named before");
  struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
  CHECK(utimensat(AT_FDCWD, model, times, 0) == 0, "touch (mtime and ctime move)");
  CHECK(id_of(&a, AT, FILE_BYTES) == 0, "the file changed since it was granted: unknown");
  close_actor(&a);
}

int main(void) {
  char dir[] = "/tmp/sp-identity-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char model[64], copy[64], other[64];
  snprintf(model, sizeof model, "%s/model", dir), snprintf(copy, sizeof copy, "%s/copy", dir);
  snprintf(other, sizeof other, "%s/other", dir);
  write_file(model, 7), write_file(copy, 7), write_file(other, 8);
  test_read_ranges(model, copy, other);
  bool mapped = test_mapped_ranges(model, other);
  test_rewritten_file(model);
  unlink(model), unlink(copy), unlink(other), rmdir(dir);
  int rc = CHECK_DONE();
  return rc ? rc : mapped ? 0 : 77; /* a part that could not run is a skip, never a pass */
}
