/*
 * actor_staged.h (private): the staged (copy) submit path, for measurement.
 *
 * `samepage bench zerocopy` compares the zero-copy path with a
 * conventional one that copies every tensor of a command into a separate
 * host buffer, computes there and copies the destination back. That path
 * is a benchmark's instrument, not part of the embedding API, so it is
 * declared here and not in samepage.h.
 */
#ifndef SP_ACTOR_STAGED_H
#define SP_ACTOR_STAGED_H

#include "samepage.h"

/* sp_actor_submit, with each command run through a staging copy: its
 * tensors are copied into a fresh host buffer (shared memory under process
 * isolation), computed there, and the destination copied back to the
 * actor's memory. Validation, limits and statistics are those of
 * sp_actor_submit. `cmds` is borrowed. Errors: as sp_actor_submit's, and
 * running out of memory for the staging buffer. */
sp_error_t *sp_actor_submit_staged(sp_actor_t *actor, const sp_cmd *cmds, uint32_t count);

#endif
