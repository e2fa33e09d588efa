# Tests of the tokenizers and chat templates (issue 15): llama.cpp's vocab-only files.
# Included by tests/CMakeLists.txt before the labels are assigned.
