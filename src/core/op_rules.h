/*
 * op_rules.h: per-op shape and dtype rules, used by the validator.
 *
 * Generic tensor checks (bounds, alignment, dtype known) happen first; an
 * op's rule then checks the relations between its tensors.
 */
#ifndef SP_OP_RULES_H
#define SP_OP_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "samepage_abi.h"

typedef struct sp_op_rule {
  const char *name;
  bool has_dst;          /* whether the op writes a destination tensor */
  unsigned n_src;        /* srcs 0..n_src-1 are required, the rest must be empty */
  unsigned n_params;     /* params 0..n_params-1 are used, the rest must be 0 */
  unsigned inplace_mask; /* bit i: dst may be identical to src[i] */
  unsigned optional_mask; /* bit i: src[i] (i < n_src) may be left empty */
  /* Checks shapes/dtypes; writes a message and returns a status on failure. */
  sp_status (*check)(const sp_cmd *cmd, char *msg, size_t cap);
} sp_op_rule;

/* Returns the rule for `op`, or NULL for an unknown op. */
const sp_op_rule *sp_op_rule_get(uint32_t op);

#endif
