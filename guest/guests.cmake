# Builds WebAssembly guests with Debian's clang (--target=wasm32-wasi) and
# wasi-libc. sp_add_guest(<name> SOURCES <c files> [REACTOR] [EXPORTS <fn>...])
# produces ${CMAKE_BINARY_DIR}/guests/<name>.wasm and a target guest_<name>.
find_program(SP_WASM_CC NAMES clang clang-14 REQUIRED)
set(SP_GUEST_DIR ${CMAKE_BINARY_DIR}/guests)
file(MAKE_DIRECTORY ${SP_GUEST_DIR})
# Guests rebuild when any guest header changes.
file(GLOB SP_GUEST_HEADERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/guest/llm/*.h)
# SIMD128 and bulk memory (memory.copy for memcpy): Wasmtime has both on by
# default; without -ffast-math clang vectorizes no float reduction, so the
# guests' numerics do not change.
set(SP_GUEST_CFLAGS -O2 -msimd128 -mbulk-memory -Wall -Wextra -Werror -Wno-unused-parameter -std=gnu11
    -I${CMAKE_SOURCE_DIR}/include -I${CMAKE_SOURCE_DIR}/guest/include
    -I${CMAKE_SOURCE_DIR}/guest/llm)

function(sp_add_guest name)
  cmake_parse_arguments(G "REACTOR" "" "SOURCES;EXPORTS;LINK_FLAGS" ${ARGN})
  set(out ${SP_GUEST_DIR}/${name}.wasm)
  set(flags ${SP_GUEST_CFLAGS})
  if(G_REACTOR)
    list(APPEND flags -mexec-model=reactor)
  endif()
  foreach(fn ${G_EXPORTS})
    list(APPEND flags -Wl,--export=${fn})
  endforeach()
  set(srcs "")
  foreach(s ${G_SOURCES})
    list(APPEND srcs ${CMAKE_SOURCE_DIR}/${s})
  endforeach()
  add_custom_command(OUTPUT ${out}
    COMMAND ${SP_WASM_CC} --target=wasm32-wasi ${flags} ${G_LINK_FLAGS} -o ${out} ${srcs} -lm
    DEPENDS ${srcs} ${CMAKE_SOURCE_DIR}/guest/include/samepage_guest.h ${SP_GUEST_HEADERS}
            ${CMAKE_SOURCE_DIR}/include/samepage_abi.h ${CMAKE_SOURCE_DIR}/include/samepage_llm.h
    COMMENT "guest ${name}.wasm" VERBATIM)
  add_custom_target(guest_${name} ALL DEPENDS ${out})
endfunction()

# Embeds a built guest into a host binary as a byte array symbol
# sp_embedded_<name> / sp_embedded_<name>_end (see src/cli/embedded.h).
function(sp_embed_guest target name)
  set(wasm ${SP_GUEST_DIR}/${name}.wasm)
  set(src ${CMAKE_BINARY_DIR}/embedded_${name}.c)
  file(WRITE ${src}.in
    "/* generated: embeds ${name}.wasm */\n"
    "__asm__(\".section .rodata\\n.balign 16\\n.global sp_embedded_${name}\\n"
    "sp_embedded_${name}:\\n.incbin \\\"${wasm}\\\"\\n"
    ".global sp_embedded_${name}_end\\nsp_embedded_${name}_end:\\n.previous\\n\");\n")
  configure_file(${src}.in ${src} COPYONLY)
  set_source_files_properties(${src} PROPERTIES OBJECT_DEPENDS ${wasm})
  target_sources(${target} PRIVATE ${src})
  add_dependencies(${target} guest_${name})
endfunction()

sp_add_guest(example_matmul SOURCES guest/examples/matmul.c)
# The LLM guest: GGUF, tokenizers, the forward pass of every supported
# architecture, sampling, chat.
sp_add_guest(llm REACTOR SOURCES
  guest/llm/llm_main.c guest/llm/model.c guest/llm/model_load.c guest/llm/model_arch.c guest/llm/sampler.c
  guest/llm/chat.c guest/llm/gguf.c guest/llm/tokenizer.c guest/llm/unicode.c
  guest/llm/unicode_tables.c guest/llm/tok_spm.c)
sp_add_guest(bench_zerocopy SOURCES bench/zerocopy_guest.c REACTOR
  EXPORTS prepare_tensor matmul_buffers matmul_check submit_loop)
