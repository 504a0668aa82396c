#!/usr/bin/env bash
# The peer on ARM, set up once for scripts/arm_peer.sh: Debian's arm64 Python 3.11 unpacked into
# DIR/root, onnxruntime's and numpy's aarch64 wheels in DIR/site (PYTHONPATH), and one qemu prefix
# per emulated core (DIR/a72, DIR/a76): the arm64 root seen through links, plus a /proc/cpuinfo that
# describes that core. onnxruntime reads /proc/cpuinfo to pick its kernels (and crashes on the
# host's x86 one); qemu-user's -L prefix serves the prefix's copy.
# Usage: scripts/arm64_onnxruntime.sh DIR   (default DIR: target/arm64-onnxruntime)
# Needs apt (it adds the arm64 architecture to dpkg to download packages; nothing is installed)
# and python3 with pip. Prints the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/arm64-onnxruntime}
ort_version=${RESNEXT_EDGE_ORT_VERSION:-1.32.0}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
ready="$dir/ready-$ort_version"
if [ -f "$ready" ]; then echo "$dir"; exit 0; fi

# Python and the shared libraries it and onnxruntime load (Debian 12's package names).
packages=(libc6 libgcc-s1 libstdc++6 libcrypt1 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5
  libsqlite3-0 libuuid1 libtinfo6 libncursesw6 libreadline8 libtirpc3 libnsl2 libgssapi-krb5-2
  libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
  libpython3.11-minimal libpython3.11-stdlib python3.11-minimal)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi
apt-get update -qq >/dev/null || echo "apt-get update failed; trying the package lists at hand" >&2
rm -rf "$dir/debs" "$dir/root" && mkdir -p "$dir/debs" "$dir/root"
# (as root, apt warns that its download is not sandboxed: kept in a log unless it fails)
(cd "$dir/debs" && apt-get download -qq "${packages[@]/%/:arm64}" 2>"$dir/apt.log") || {
  cat "$dir/apt.log" >&2
  exit 1
}
for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
rm -rf "$dir/debs"

rm -rf "$dir/site"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$dir/site" --only-binary=:all: \
  --implementation cp --python-version 3.11 --platform manylinux_2_28_aarch64 \
  --platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
  "onnxruntime==$ort_version" numpy

# prefix NAME PART FEATURES: a qemu prefix whose /proc/cpuinfo names an Arm core (CPU part) and
# its features as the Linux kernel prints them.
prefix() {
  local p="$dir/$1"
  rm -rf "$p" && mkdir -p "$p/proc"
  for entry in "$dir"/root/*; do ln -s "$entry" "$p/$(basename "$entry")"; done
  {
    for cpu in 0 1 2 3; do
      printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\n' "$cpu" "$3"
      printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x%s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
        "${4:-0}" "$2" "${5:-3}"
    done
  } > "$p/proc/cpuinfo"
}
# Cortex-A72 (Raspberry Pi 4, BCM2711: r0p3): NEON, no dot product.
prefix a72 0xd08 "fp asimd evtstrm crc32 cpuid" 0 3
# Cortex-A76 (Raspberry Pi 5, BCM2712: r4p1): the dot product and half floats.
prefix a76 0xd0b "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" 4 1
touch "$ready"
echo "$dir"
