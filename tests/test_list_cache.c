/*
 * test_list_cache.c: a repeated list skips validation only when nothing
 * validation depends on changed (src/core/list_cache.h).
 */
#include <string.h>

#include "check.h"
#include "core/list_cache.h"

static sp_cmd list[3];

static void make_list(void) {
  memset(list, 0, sizeof list);
  for (int i = 0; i < 3; i++) {
    list[i].op = SP_OP_ADD;
    list[i].dst = (sp_tensor){.offset = 4096u * (i + 1), .dtype = SP_DTYPE_F32, .ne = {16, 1, 1, 1}};
    list[i].src[0] = list[i].src[1] = list[i].dst;
  }
}

int main(void) {
  sp_list_cache cache = {0};
  sp_validate_ctx ctx = {1u << 20, 0, 0, 1024};
  sp_range frozen = {8192, 4096};
  sp_list_key key = sp_list_key_make(&ctx, NULL, 0, NULL, 0);
  make_list();
  CHECK(!sp_list_cache_find(&cache, list, 3, &key), "an empty cache finds nothing");
  CHECK(sp_list_cache_begin(&cache, list, 3), "begin");
  sp_cmd normalized[3];
  memcpy(normalized, list, sizeof list);
  normalized[0].dst.nb[0] = 64; /* what validation writes back */
  CHECK(!sp_list_cache_find(&cache, list, 3, &key), "not found before commit");
  sp_list_cache_commit(&cache, normalized, &key);
  const sp_cmd *hit = sp_list_cache_find(&cache, list, 3, &key);
  CHECK(hit && hit[0].dst.nb[0] == 64, "the same bytes give the validated copy");
  list[2].src[1].offset += 4;
  CHECK(!sp_list_cache_find(&cache, list, 3, &key), "one changed field misses");
  make_list();
  CHECK(!sp_list_cache_find(&cache, list, 2, &key), "a shorter list misses");
  sp_list_key frozen_key = sp_list_key_make(&ctx, &frozen, 1, NULL, 0);
  CHECK(!sp_list_cache_find(&cache, list, 3, &frozen_key), "a new frozen range misses");
  sp_list_key local_key = sp_list_key_make(&ctx, NULL, 0, &frozen, 1);
  CHECK(!sp_list_cache_find(&cache, list, 3, &local_key), "a new device-local range misses");
  sp_validate_ctx grown = ctx;
  grown.committed *= 2;
  sp_list_key grown_key = sp_list_key_make(&grown, NULL, 0, NULL, 0);
  CHECK(!sp_list_cache_find(&cache, list, 3, &grown_key), "another committed size misses");
  sp_validate_ctx moved = ctx;
  moved.list_addr = 4096, moved.list_bytes = 1000;
  sp_list_key moved_key = sp_list_key_make(&moved, NULL, 0, NULL, 0);
  CHECK(!sp_list_cache_find(&cache, list, 3, &moved_key), "the list at another address misses");
  CHECK(sp_list_cache_find(&cache, list, 3, &key) != NULL, "still a hit with the original key");
  CHECK(sp_list_cache_begin(&cache, list, 2), "a new list begins");
  CHECK(!sp_list_cache_find(&cache, list, 3, &key), "begin forgets the old list until commit");
  sp_list_cache_free(&cache);
  return CHECK_DONE();
}
