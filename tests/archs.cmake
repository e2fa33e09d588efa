# Tests of the architectures (issue 15): qwen2, qwen3, gemma3, phi3, Mistral-style llama.
# Included by tests/CMakeLists.txt before the labels are assigned.
#
# test_arch: every architecture's synthetic file (tools/synth_gguf presets,
# shrunk) loads in the LLM guest and gives finite, deterministic logits and
# tokens; hostile metadata (zero heads, heads not dividing the width, a
# negative RoPE base, a layer pattern longer than the model, unsupported
# settings) is refused with the key and value named (tests/test_arch.sh).
add_executable(test_arch test_arch.c)
target_link_libraries(test_arch PRIVATE samepage m)
add_dependencies(test_arch guest_llm synth_gguf)
add_test(NAME test_arch COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_arch.sh $<TARGET_FILE:synth_gguf>
         $<TARGET_FILE:test_arch> ${SP_GUEST_DIR} ${CMAKE_CURRENT_BINARY_DIR}/archs)
set_tests_properties(test_arch PROPERTIES TIMEOUT 600)

# test_arch_llamacpp: the same files through llama.cpp (llama-cpp-python
# over a shared libllama), argmax compared at every prompt position whose
# llama.cpp top-1/top-2 margin is clear (tools/reference/compare_arch.py).
# Exits 77 (skipped) where llama_cpp cannot be imported.
add_test(NAME test_arch_llamacpp COMMAND python3 ${CMAKE_SOURCE_DIR}/tools/reference/compare_arch.py
         --synth $<TARGET_FILE:synth_gguf> --test-arch $<TARGET_FILE:test_arch>
         --guest-dir ${SP_GUEST_DIR} --out ${CMAKE_CURRENT_BINARY_DIR}/archs_llamacpp)
set_tests_properties(test_arch_llamacpp PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 1200)
# The weight types of issue 15 (Q2_K..Q6_K, Q5_0, Q5_1, IQ4_NL, IQ4_XS and a
# q4_k_m mixture) against llama.cpp the same way: checks the CPU backend's
# dequantization and matmuls, through whole models.
add_test(NAME test_arch_quants_llamacpp COMMAND python3 ${CMAKE_SOURCE_DIR}/tools/reference/compare_arch.py
         --weights --synth $<TARGET_FILE:synth_gguf> --test-arch $<TARGET_FILE:test_arch>
         --guest-dir ${SP_GUEST_DIR} --out ${CMAKE_CURRENT_BINARY_DIR}/archs_quants_llamacpp)
set_tests_properties(test_arch_quants_llamacpp PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 1200)
# The real Gemma 3 270M (Q4_K_M, scripts/fetch-model.sh gemma3-270m, beside
# the default model) against llama.cpp on real text, argmax rule only.
# Skipped (77) without the file or without llama_cpp.
get_filename_component(SP_ARCH_MODEL_DIR ${SP_TEST_MODEL} DIRECTORY)
add_test(NAME test_arch_gemma3_real_llamacpp COMMAND python3 ${CMAKE_SOURCE_DIR}/tools/reference/compare_arch.py
         --model ${SP_ARCH_MODEL_DIR}/gemma-3-270m-Q4_K_M.gguf --synth $<TARGET_FILE:synth_gguf>
         --test-arch $<TARGET_FILE:test_arch> --guest-dir ${SP_GUEST_DIR} --out ${CMAKE_CURRENT_BINARY_DIR}/archs_real)
set_tests_properties(test_arch_gemma3_real_llamacpp PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
# The llama.cpp comparisons build nothing but run llama.cpp: slow.
set_property(TEST test_arch_llamacpp test_arch_quants_llamacpp test_arch_gemma3_real_llamacpp APPEND PROPERTY LABELS slow)
