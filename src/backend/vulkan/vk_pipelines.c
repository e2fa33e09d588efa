/*
 * vk_pipelines.c: the embedded shaders and their compute pipelines.
 *
 * Each shader (shaders/<name>.comp) is compiled by glslc at build time and
 * embedded as an array of SPIR-V words (<name>.spv.h, vulkan.cmake), twice:
 * with 64-bit floats, where the CPU's float operations are reproduced bit
 * for bit, and without (<name>_nof64), for devices that lack them. Every
 * pipeline shares one layout: no descriptor sets, only the push constants
 * of sp_vk_push, since shaders reach memory through device addresses.
 * Pipelines are made on first use (lavapipe compiles each one with LLVM),
 * the matmul shader once per weight dtype, which it takes as
 * specialization constant 0 (constant 1: its grid, sp_vk_ctx.matmul_split).
 */
#include <stdio.h>
#include <string.h>

#include "backend/vulkan/vk_backend.h"

#include "argmax.spv.h"
#include "argmax_nof64.spv.h"
#include "attention.spv.h"
#include "attention_nof64.spv.h"
#include "check.spv.h"
#include "check_nof64.spv.h"
#include "elementwise.spv.h"
#include "elementwise_nof64.spv.h"
#include "get_rows.spv.h"
#include "get_rows_nof64.spv.h"
#include "matmul.spv.h"
#include "matmul_nof64.spv.h"
#include "quantize.spv.h"
#include "quantize_nof64.spv.h"
#include "rope.spv.h"
#include "rope_nof64.spv.h"
#include "rows.spv.h"
#include "rows_nof64.spv.h"
#include "set_rows.spv.h"
#include "set_rows_nof64.spv.h"
#include "topk.spv.h"
#include "topk_nof64.spv.h"

typedef struct spv_blob {
  const uint32_t *words;
  size_t bytes;
  const char *name;
} spv_blob;

/* [shader][0]: with 64-bit floats, [1]: without (shaders/common.glsl). */
#define SPV(name) {{sp_vk_spv_##name, sizeof sp_vk_spv_##name, #name}, \
                   {sp_vk_spv_##name##_nof64, sizeof sp_vk_spv_##name##_nof64, #name "_nof64"}}
static const spv_blob blobs[SP_VK_SHADER_COUNT][2] = {
    [SP_VK_ELEMENTWISE] = SPV(elementwise),
    [SP_VK_ROWS] = SPV(rows),
    [SP_VK_ARGMAX] = SPV(argmax),
    [SP_VK_TOPK] = SPV(topk),
    [SP_VK_ROPE] = SPV(rope),
    [SP_VK_GET_ROWS] = SPV(get_rows),
    [SP_VK_SET_ROWS] = SPV(set_rows),
    [SP_VK_CHECK] = SPV(check),
    [SP_VK_MATMUL] = SPV(matmul),
    [SP_VK_ATTENTION] = SPV(attention),
    [SP_VK_QUANTIZE] = SPV(quantize),
};
#undef SPV

sp_error_t *sp_vk_pipelines_init(sp_vk_ctx *c) {
  VkPushConstantRange range = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = sizeof(sp_vk_push)};
  VkPipelineLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                   .pushConstantRangeCount = 1, .pPushConstantRanges = &range};
  VK_TRY(vkCreatePipelineLayout(c->dev, &li, NULL, &c->layout), "vulkan backend: the pipeline layout");
  for (int s = 0; s < SP_VK_SHADER_COUNT; s++) {
    const spv_blob *blob = &blobs[s][c->float64 ? 0 : 1];
    VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = blob->bytes,
                                   .pCode = blob->words};
    VK_TRY(vkCreateShaderModule(c->dev, &mi, NULL, &c->modules[s]), "vulkan backend: shader %s", blob->name);
  }
  return NULL;
}

static sp_error_t *make_pipeline(sp_vk_ctx *c, sp_vk_shader s, uint32_t variant, VkPipeline *out) {
  /* matmul: 0 the weight dtype, 1 SPLIT (a workgroup per output) */
  uint32_t data[2] = {variant, c->matmul_split};
  VkSpecializationMapEntry entries[2] = {{.constantID = 0, .offset = 0, .size = sizeof(uint32_t)},
                                         {.constantID = 1, .offset = 4, .size = sizeof(uint32_t)}};
  VkSpecializationInfo spec = {.mapEntryCount = 2, .pMapEntries = entries, .dataSize = sizeof data, .pData = data};
  VkComputePipelineCreateInfo ci = {
      .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
      .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = c->modules[s], .pName = "main", .pSpecializationInfo = s == SP_VK_MATMUL ? &spec : NULL},
      .layout = c->layout};
  VK_TRY(vkCreateComputePipelines(c->dev, VK_NULL_HANDLE, 1, &ci, NULL, out), "vulkan: pipeline %s (variant %u)",
         blobs[s][c->float64 ? 0 : 1].name, variant);
  return NULL;
}

VkPipeline sp_vk_pipeline(sp_vk_ctx *c, sp_vk_shader s, uint32_t variant, sp_error_t **err) {
  if (variant >= SP_DTYPE_COUNT) variant = 0;
  pthread_mutex_lock(&c->pipe_mu);
  VkPipeline p = c->pipes[s][variant];
  if (!p) {
    *err = make_pipeline(c, s, variant, &p);
    if (!*err) c->pipes[s][variant] = p;
    else p = VK_NULL_HANDLE;
  }
  pthread_mutex_unlock(&c->pipe_mu);
  return p;
}

void sp_vk_pipelines_free(sp_vk_ctx *c) {
  for (int s = 0; s < SP_VK_SHADER_COUNT; s++) {
    for (int v = 0; v < SP_DTYPE_COUNT; v++)
      if (c->pipes[s][v]) vkDestroyPipeline(c->dev, c->pipes[s][v], NULL);
    if (c->modules[s]) vkDestroyShaderModule(c->dev, c->modules[s], NULL);
  }
  if (c->layout) vkDestroyPipelineLayout(c->dev, c->layout, NULL);
}

sp_error_t *sp_vk_pipelines_remake(sp_vk_ctx *c, bool float64) {
  vkDeviceWaitIdle(c->dev);
  pthread_mutex_lock(&c->pipe_mu);
  sp_vk_pipelines_free(c);
  memset(c->pipes, 0, sizeof c->pipes), memset(c->modules, 0, sizeof c->modules);
  c->layout = VK_NULL_HANDLE;
  c->float64 = float64;
  c->pipe_gen++;
  sp_error_t *err = sp_vk_pipelines_init(c);
  pthread_mutex_unlock(&c->pipe_mu);
  return err;
}
