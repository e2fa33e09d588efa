#!/usr/bin/env bash
# pack-vulkan-device.sh [BUILD] [OUT]: what the GPU machine needs to run
# --backend vulkan (it has the NVIDIA driver and its ICD file, but no
# Vulkan loader and no GL vendor libraries, without which vkCreateInstance
# fails with VK_ERROR_INCOMPATIBLE_DRIVER): libsamepage_vulkan.so,
# test_vulkan_ops and test_vulkan_local from BUILD (default build-vk), and Debian's loader and
# libraries, downloaded with apt-get and unpacked with dpkg -x into lib/.
# OUT (default .carry/vk) is then carried; scripts/device-vulkan-check.sh
# uses it as VK_BUNDLE.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build-vk}"; out="${2:-$root/.carry/vk}"
debs=(libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2 libx11-6 libxau6 libxdmcp6 libxext6 libxcb1 libbsd0 libmd0)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "${debs[@]}" >/dev/null)
rm -rf "$out"; mkdir -p "$out/lib"
for d in "$work"/*.deb; do dpkg -x "$d" "$work/x"; done
cp -a "$work"/x/usr/lib/x86_64-linux-gnu/*.so* "$out/lib/"
cp "$build/libsamepage_vulkan.so" "$build/test_vulkan_ops" "$build/test_vulkan_local" "$out/"
du -sh "$out"
