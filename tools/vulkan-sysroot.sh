#!/usr/bin/env bash
# A newer Vulkan stack beside the system's, for what Debian 12 (bookworm) lacks: Mesa's lavapipe with matrix units
# (VK_KHR_cooperative_matrix: Mesa 26.1 has them, 25.0 does not) and a glslc that compiles GL_KHR_cooperative_matrix
# (Debian 12's shaderc 2023.2 does not; Debian 13's 2025.2 does). It fetches Debian 13 (trixie, and trixie-backports for
# Mesa) packages with a private apt state, unpacks them into DIR without installing anything, and writes:
#   DIR/lvp_icd.json   the lavapipe driver, for VK_DRIVER_FILES
#   DIR/bin/glslc      the newer glslc
#   DIR/bin/dotnet     the dotnet host under the newer C library, for RunConfiguration.DotNetHostPath (lavapipe needs
#                      glibc 2.39 and a newer libstdc++, so the test process must start on them; the system's are older)
# Usage: tools/vulkan-sysroot.sh DIR   (again with the same DIR: nothing to do). Needs apt-get and deb.debian.org.
set -euo pipefail
dir="${1:?usage: tools/vulkan-sysroot.sh DIR}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
[[ -f "$dir/ready" ]] && exit 0
command -v apt-get > /dev/null || { echo "vulkan-sysroot: needs apt-get (Debian or Ubuntu)" >&2; exit 2; }

apt="$dir/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dir/debs" "$dir/root"
cat > "$apt/sources.list" <<'EOF'
deb [trusted=yes] http://deb.debian.org/debian trixie main
deb [trusted=yes] http://deb.debian.org/debian trixie-backports main
EOF
: > "$apt/status"
options=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$apt/lists"
  -o "Dir::State::Status=$apt/status" -o "Dir::Cache=$apt/cache" -o APT::Default-Release=trixie-backports
  -o APT::Sandbox::User=root -o Debug::NoLocking=1)
apt-get "${options[@]}" -qq update > /dev/null

# The packages and every library they depend on, as trixie has them (the system's own are too old to stand in).
wanted=(mesa-vulkan-drivers libvulkan1 glslc)
packages="$(apt-cache "${options[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances "${wanted[@]}" | grep -v '^[ <]' | sort -u)"
(cd "$dir/debs" && apt-get "${options[@]}" -qq download $packages > /dev/null)
for deb in "$dir"/debs/*.deb; do
  dpkg-deb -x "$deb" "$dir/root"
done

lib="$dir/root/usr/lib/x86_64-linux-gnu"
[[ -f "$lib/libvulkan_lvp.so" && -x "$lib/ld-linux-x86-64.so.2" ]] || { echo "vulkan-sysroot: the packages lack lavapipe or the C library" >&2; exit 1; }
printf '{"ICD":{"api_version":"1.4.0","library_path":"%s/libvulkan_lvp.so"},"file_format_version":"1.0.0"}\n' "$lib" > "$dir/lvp_icd.json"

mkdir -p "$dir/bin"
cat > "$dir/bin/glslc" <<EOF
#!/bin/sh
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$dir/root/usr/bin/glslc" "\$@"
EOF

# The dotnet host finds itself through /proc/self/exe, which is the program loader when the loader runs it, and refuses
# to run under another name: so the loader is copied in as "dotnet" beside links to the real host's folders.
dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
mkdir -p "$dir/dotnet"
cp "$lib/ld-linux-x86-64.so.2" "$dir/dotnet/dotnet"
for part in host shared; do
  ln -sfn "$dotnet_root/$part" "$dir/dotnet/$part"
done
cat > "$dir/bin/dotnet" <<EOF
#!/bin/sh
exec "$dir/dotnet/dotnet" --library-path "$lib" "$dotnet_root/dotnet" "\$@"
EOF
chmod +x "$dir/bin/glslc" "$dir/bin/dotnet"
"$dir/bin/glslc" --version > /dev/null
touch "$dir/ready"
