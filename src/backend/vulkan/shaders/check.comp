#version 450
// check.comp: the index tensor of the next command, read once, before it
// runs (one workgroup): the first index outside 0..limit-1 stops the list
// (the status word: command, position, value, limit), as the CPU's
// SP_E_BOUNDS. pc.aux: 0 get_rows (src[1] rows of src[0]), 1 set_rows
// (src[1] rows of dst), 2 attention (src[3] positions in a cache of
// src[1].ne[2] rows).
#include "common.glsl"
layout(local_size_x = 256) in;
shared uint first;

void main() {
  if (stopped()) return;
  uint kind = pc.aux;
  Tensor idx = tensor(kind == 2u ? 4u : 2u);
  uint limit = kind == 0u ? tensor(1u).ne1 : kind == 1u ? tensor(0u).ne1 : tensor(2u).ne2;
  uint t = gl_LocalInvocationID.x;
  if (t == 0u) first = 0xffffffffu;
  barrier();
  for (uint i = t; i < idx.ne0; i += 256u) {
    int v = ld_i32(idx.base, idx.off + 4u * i);
    if (v < 0 || uint(v) >= limit) atomicMin(first, i);
  }
  barrier();
  if (t == 0u && first != 0xffffffffu) {
    Status st = Status(pc.status);
    st.cmd = pc.index;
    st.value = ld_i32(idx.base, idx.off + 4u * first);
    st.at = first;
    st.limit = limit;
    st.code = 1u;
  }
}
