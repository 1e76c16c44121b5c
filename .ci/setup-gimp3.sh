#!/usr/bin/env bash
# Makes GIMP 3 available for the host tests (tests/hosts/test_gimp.py) and the README
# screenshot (ENHANCELAYER_UPDATE_SCREENSHOTS=1 with the task-first dialog test).
# Debian 13+: installs the packages from the machine's own apt. Debian 12: builds (or reuses,
# adding any missing package) a trixie chroot with debootstrap, using the mirror named in the
# machine's apt sources. Prints the chroot path on the last line ("-" when GIMP 3 is native).
# The chroot is left unmounted; the tests mount /proc, /dev, /dev/pts, /sys while they run.
#
# `setup-gimp3.sh sid`: the same for Debian sid (today's Krita 5.3 and GIMP 3.2, the versions
# retouchers who follow upstream run), always as a chroot, at /var/lib/enhancelayer-ci/sid
# (or $ENHANCELAYER_SID_CHROOT); the host tests run every Krita and GIMP test there as well.
set -euo pipefail
SUITE=${1:-trixie}
case $SUITE in
  trixie) T=${ENHANCELAYER_GIMP_CHROOT:-/var/lib/enhancelayer-ci/trixie} ;;
  sid) T=${ENHANCELAYER_SID_CHROOT:-/var/lib/enhancelayer-ci/sid} ;;
  *) echo "usage: $0 [trixie|sid]" >&2; exit 2 ;;
esac
# gimp + its Python bindings; xvfb/xauth/xdotool: the GUI tests (undo, cancel, the dialog by keys)
PKGS=(gimp python3-gi gir1.2-gimp-3.0 xvfb xauth xdotool)
# In a chroot only: its Krita (5.2 in trixie, 5.3 in sid) as one more Krita version of the host tests
# (on Debian 13 the host's own krita is already 5.2; trixie names the sip package python3-pyqt5.sip).
CHROOT_EXTRA=(krita python3-pyqt5 python3-pyqt5.sip x11-utils)
major=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo 0)
if [ "$SUITE" = trixie ] && [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 13 )); then
  if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PKGS[@]}" >&2
  fi
  echo "-"; exit 0
fi
mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
         | grep -v security | head -n1 | awk '{print $2}' || true)
mirror=${mirror:-}
mounted=()
mount_all() {
  local m
  for m in proc dev dev/pts sys; do
    mountpoint -q "$T/$m" && continue
    case $m in
      proc) mount -t proc proc "$T/proc" ;;
      sys) mount -t sysfs sys "$T/sys" ;;
      *) mount --bind "/$m" "$T/$m" ;;
    esac
    mounted=("$m" "${mounted[@]}")
  done
}
umount_all() { local m; for m in "${mounted[@]}"; do umount "$T/$m" || true; done; mounted=(); }
need_pkgs() { ! chroot "$T" dpkg -s "${PKGS[@]}" "${CHROOT_EXTRA[@]}" >/dev/null 2>&1; }
if [ ! -x "$T/usr/bin/gimp-console-3.0" ] || need_pkgs; then
  command -v debootstrap >/dev/null || { apt-get update -q >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2; }
  if [ ! -x "$T/usr/bin/apt-get" ]; then
    rm -rf "$T"; mkdir -p "$T"
    debootstrap --variant=minbase "$SUITE" "$T" "$mirror" >&2
  fi
  trap umount_all EXIT
  mount_all
  cp /etc/resolv.conf "$T/etc/resolv.conf"
  # the mirror may be a dated snapshot whose sid Release file has "expired": the packages are
  # still the ones that suite had then, so the check that a newer Release exists is turned off
  chroot "$T" apt-get -o Acquire::Check-Valid-Until=false update -q >&2
  chroot "$T" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PKGS[@]}" "${CHROOT_EXTRA[@]}" >&2
  chroot "$T" apt-get clean
  umount_all
  trap - EXIT
fi
echo "$T"
