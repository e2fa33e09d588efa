# Tests of the tokenizers and chat templates (issue 15): llama.cpp's vocab-only files.
# Included by tests/CMakeLists.txt before the labels are assigned.

# The SentencePiece merger is part of the tokenizer: the native tests that
# link guest/llm/tokenizer.c (SP_LLM_NATIVE) need it too.
set(SP_TOK_SPM ${CMAKE_SOURCE_DIR}/guest/llm/tok_spm.c)
list(APPEND SP_LLM_NATIVE ${SP_TOK_SPM})
target_sources(test_tokenizer PRIVATE ${SP_TOK_SPM})
target_sources(test_gguf PRIVATE ${SP_TOK_SPM})

# Every text of llama.cpp's test-tokenizer-0 data for the qwen2, llama-bpe,
# gpt-2, phi-3, llama-spm and gemma-4 vocabularies (and qwen35, falcon, mpt,
# starcoder, refact, command-r), id for id; plus chat prompts and other texts
# full of special tokens tokenized by llama.cpp itself, with parse_special
# on and off (tests/test_tok_special_gen.py made the fixture). The files come
# from scripts/fetch-llama-vocab.sh; without them the test skips (77).
add_executable(test_tok_vocab test_tok_vocab.c ${SP_LLM_NATIVE})
target_include_directories(test_tok_vocab PRIVATE ${CMAKE_SOURCE_DIR}/guest/llm)
target_link_libraries(test_tok_vocab PRIVATE m)
add_test(NAME test_tok_vocab COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_tok_vocab.sh
         $<TARGET_FILE:test_tok_vocab> ${CMAKE_SOURCE_DIR}
         --special ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/tok_special_llamacpp.txt)
set_tests_properties(test_tok_vocab PROPERTIES SKIP_RETURN_CODE 77 LABELS unit TIMEOUT 120)

# Chat formats: each family's prompt for a system + user + assistant + user
# conversation (and a user-only one) against the fixture rendered by jinja2
# from the templates in the same llama.cpp tree (tests/test_tok_chat_gen.py).
add_executable(test_tok_chat test_tok_chat.c ${CMAKE_SOURCE_DIR}/guest/llm/chat.c
               ${CMAKE_SOURCE_DIR}/guest/llm/gguf.c)
target_include_directories(test_tok_chat PRIVATE ${CMAKE_SOURCE_DIR}/guest/llm
                           ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME test_tok_chat COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_tok_vocab.sh
         $<TARGET_FILE:test_tok_chat> ${CMAKE_SOURCE_DIR}
         ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/chat_llamacpp.txt)
set_tests_properties(test_tok_chat PROPERTIES SKIP_RETURN_CODE 77 LABELS unit TIMEOUT 60)

# The SentencePiece path on vocabularies built in the test (no files):
# score order, the "▁" prefix, byte fallback, decoding, Phi-3's rstrip, and
# hostile tokenizer metadata.
add_executable(test_tok_spm test_tok_spm.c ${SP_LLM_NATIVE})
target_include_directories(test_tok_spm PRIVATE ${CMAKE_SOURCE_DIR}/guest/llm
                           ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(test_tok_spm PRIVATE m)
add_test(NAME test_tok_spm COMMAND test_tok_spm)
set_tests_properties(test_tok_spm PROPERTIES LABELS unit TIMEOUT 60)
