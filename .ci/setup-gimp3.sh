#!/usr/bin/env bash
# Makes GIMP 3 available for the host tests.
# Debian 13+: installs gimp from the machine's own apt. Debian 12: builds (or reuses) a
# trixie chroot with debootstrap, using the mirror named in the machine's apt sources.
# Prints the chroot path on the last line ("-" when GIMP 3 is native).
set -euo pipefail
T=${ENHANCELAYER_GIMP_CHROOT:-/var/lib/enhancelayer-ci/trixie}
major=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo 0)
if [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 13 )); then
  if ! command -v gimp-console-3.0 >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gimp python3-gi gir1.2-gimp-3.0
  fi
  echo "-"; exit 0
fi
mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
         | grep -v security | head -n1 | awk '{print $2}' || true)
mirror=${mirror:-}
mounted() { mountpoint -q "$1"; }
mount_all() {
  mounted $T/proc || mount -t proc proc $T/proc
  mounted $T/dev || mount --bind /dev $T/dev
  mounted $T/dev/pts || mount --bind /dev/pts $T/dev/pts
  mounted $T/sys || mount -t sysfs sys $T/sys
}
umount_all() { for m in dev/pts dev sys proc; do mounted $T/$m && umount $T/$m || true; done; }
if [ ! -x "$T/usr/bin/gimp-console-3.0" ]; then
  command -v debootstrap >/dev/null || { apt-get update -q; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap; }
  if [ ! -x "$T/usr/bin/apt-get" ]; then
    rm -rf "$T"; mkdir -p "$T"
    debootstrap --variant=minbase trixie "$T" "$mirror" >&2
  fi
  mount_all; trap umount_all EXIT
  cp /etc/resolv.conf $T/etc/resolv.conf
  chroot $T apt-get update -q >&2
  chroot $T env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      gimp python3-gi gir1.2-gimp-3.0 xvfb xauth >&2
  chroot $T apt-get clean
fi
echo "$T"
