#!/usr/bin/env bash
# Run agentpi's own set-up and checks inside a fresh Debian root of another release or
# architecture: a Pi's arm64 bookworm through qemu-user, or trixie (Python 3.13) natively.
#
#   tools/debian_root.sh SUITE ARCH 'COMMANDS'      (as root; the root is cached)
#   e.g. tools/debian_root.sh bookworm arm64 'make demo && .venv/bin/python -m pytest -m "not realtime"'
#
# The root is built once with debootstrap under $AGENTPI_ROOTS (default /var/cache/agentpi-roots)
# with only what a bare image has plus git and make (what the README asks for first); everything
# else is installed by the project's own Makefile, as on a real device. A clean clone of this
# checkout's HEAD is copied in each time. Prints a short report with timings at the end.
set -euo pipefail

suite=${1:?suite (bookworm, trixie)}
arch=${2:?architecture (arm64, amd64)}
commands=${3:-make demo}
roots=${AGENTPI_ROOTS:-/var/cache/agentpi-roots}
root="$roots/$suite-$arch"
here=$(cd "$(dirname "$0")/.." && pwd)
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started )) s] $*"; }

[ "$(id -u)" -eq 0 ] || { echo "debian_root.sh: run as root (debootstrap, chroot)"; exit 2; }
need=(debootstrap)
[ "$arch" = "$(dpkg --print-architecture)" ] || need+=(qemu-user-static binfmt-support)
missing=()
for package in "${need[@]}"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$arch" != "$(dpkg --print-architecture)" ]; then
  # the kernel runs the foreign binaries through qemu (registered with F: usable in a chroot)
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable "qemu-$(case $arch in arm64) echo aarch64;; *) echo "$arch";; esac)" \
    >/dev/null 2>&1 || true
fi

if [ ! -x "$root/usr/bin/make" ]; then
  say "building a $suite $arch root in $root (once; cached)"
  rm -rf "$root"
  mkdir -p "$roots"
  debootstrap --arch="$arch" --variant=minbase --include=git,make,ca-certificates,sudo \
    "$suite" "$root" http://deb.debian.org/debian >"$roots/$suite-$arch.debootstrap.log" 2>&1 \
    || { tail -20 "$roots/$suite-$arch.debootstrap.log"; exit 1; }
fi

# under qemu-user, /proc/cpuinfo shows the host's processor and onnxruntime crashes reading it:
# an emulation artefact, not the device's, so a Cortex-A72's cpuinfo stands in, one entry per
# processor /sys lists (the cpuinfo library in TensorFlow Lite crashes when the two disagree)
cpuinfo=""
if [ "$arch" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
  cpuinfo="$root/tmp/cpuinfo"
  : > "$cpuinfo"
  for ((n = 0; n < $(nproc --all); n++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$n" >> "$cpuinfo"
  done
fi

mounts=()
cleanup() {
  for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for fs in proc sys dev dev/pts; do
  mount --bind "/$fs" "$root/$fs" && mounts+=("$root/$fs")
done
if [ -n "$cpuinfo" ]; then mount --bind "$cpuinfo" "$root/proc/cpuinfo"; mounts+=("$root/proc/cpuinfo"); fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# the host's trusted certificates are trusted inside too (a network that inspects TLS, say)
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/agentpi-host-ca.crt"

rm -rf "$root/root/agentpi"
git clone -q "$here" "$root/root/agentpi"
say "running in $suite $arch: $commands"
set +e
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PIP_CERT=/etc/ssl/agentpi-host-ca.crt \
  SSL_CERT_FILE=/etc/ssl/agentpi-host-ca.crt REQUESTS_CA_BUNDLE=/etc/ssl/agentpi-host-ca.crt \
  bash -c "cd /root/agentpi && $commands" 2>&1 \
  | tee "$roots/$suite-$arch.last.log"
code=${PIPESTATUS[0]}
set -e
python=$(chroot "$root" python3 --version 2>/dev/null || echo "python3 not installed")
built=$(find "$root/root/.cache/pip/wheels" -name "*.whl" -printf "%f " 2>/dev/null || true)
echo
echo "== report: $suite $arch ($python)"
echo "   built from source: ${built:-nothing}"
echo "   outcome: exit $code after $(( $(date +%s) - started )) s; log: $roots/$suite-$arch.last.log"
grep -E "passed|failed" "$roots/$suite-$arch.last.log" | tail -3 | sed 's/^/   /' || true
exit "$code"
