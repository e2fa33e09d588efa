# Tests of the ops of issue 15: GEGLU, SOFTCAP, attention's sliding window.
# Included by tests/CMakeLists.txt before the labels are assigned.
