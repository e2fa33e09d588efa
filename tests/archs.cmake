# Tests of the architectures (issue 15): qwen2, qwen3, gemma3, phi3, Mistral-style llama.
# Included by tests/CMakeLists.txt before the labels are assigned.
