/*
 * vk_rules.h: what the Vulkan backend runs, in plain C (no Vulkan
 * headers), so that a host without the library can answer `supports` for
 * a Vulkan worker (the process-isolation proxy), as cuda_rules.h does for
 * CUDA. The backend's own supports() is this function.
 */
#ifndef SP_VK_RULES_H
#define SP_VK_RULES_H

#include <stdbool.h>

#include "samepage_abi.h"

/* The largest head size of SP_OP_ATTENTION (shaders/attention.comp). */
#define SP_VK_ATTN_MAX_D 512u

/* Whether a validated command can run on the Vulkan backend: every op
 * and every weight dtype of the CPU backend, attention up to
 * SP_VK_ATTN_MAX_D. */
bool sp_vk_rules_supports(const sp_cmd *cmd);

#endif
