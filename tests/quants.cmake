# Tests of the quant types (issue 15): dequantization against PyPI gguf, dot products, every kernel table.
# Included by tests/CMakeLists.txt before the labels are assigned.
