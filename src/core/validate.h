/*
 * validate.h: checks a guest's command list before any kernel runs.
 *
 * The host copies the list out of guest memory first (so the guest cannot
 * change it between check and use), then validates every command against
 * the actor's committed memory. Validation also normalizes each tensor:
 * packed strides (nb == 0) are replaced by their real values, so backends
 * never need to special-case them.
 */
#ifndef SP_VALIDATE_H
#define SP_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "samepage_abi.h"

/* A guest byte range [addr, addr + len). */
typedef struct sp_range {
  uint64_t addr, len;
} sp_range;

/* What a command list is checked against. */
typedef struct sp_validate_ctx {
  uint64_t committed;  /* bytes of committed guest memory */
  uint64_t list_addr;  /* guest range of the list itself: never a destination */
  uint64_t list_bytes;
  uint32_t max_cmds;   /* longest list accepted */
} sp_validate_ctx;

/* Checks a list header against the list's total byte length.
 * On success stores the command count in *count and returns SP_OK; otherwise
 * returns a status and writes a message naming the bad field into msg. */
sp_status sp_validate_header(const sp_validate_ctx *ctx, const sp_cmd_list_header *hdr,
                             uint32_t *count, char *msg, size_t msg_cap);

/* Checks and normalizes one command (index is used in messages only). */
sp_status sp_validate_cmd(const sp_validate_ctx *ctx, sp_cmd *cmd, uint32_t index,
                          char *msg, size_t msg_cap);

/* Checks that a validated command's dst overlaps none of the n frozen
 * ranges (guest memory declared immutable with freeze); SP_E_ALIAS and a
 * message naming the range otherwise. */
sp_status sp_validate_frozen(const sp_range *frozen, uint32_t n, const sp_cmd *cmd, uint32_t index,
                             char *msg, size_t msg_cap);

/* Checks that every tensor of a validated command lies wholly inside or
 * wholly outside each of the n device-local ranges (a tensor straddling a
 * boundary would be half on the device, half in guest memory); SP_E_BOUNDS
 * and a message naming the slot and the range otherwise. */
sp_status sp_validate_device_local(const sp_range *local, uint32_t n, const sp_cmd *cmd, uint32_t index,
                                   char *msg, size_t msg_cap);

/* Checks and normalizes one tensor on its own (bounds, dtype, alignment);
 * messages read "cmd[0].<field>: ...". */
sp_status sp_validate_tensor(const sp_validate_ctx *ctx, sp_tensor *t, const char *field, char *msg, size_t cap);

/* Byte extent of a normalized, valid tensor: from its offset to one past its
 * last byte. */
uint64_t sp_tensor_extent(const sp_tensor *t);

#endif
