#!/usr/bin/env bash
# Screenshot of the AI Enhance… dialog in real GIMP 3 for the README (docs/images/gimp-dialog.png).
# Needs root, the trixie chroot from .ci/setup-gimp3.sh (or native GIMP 3), Xvfb + ImageMagick on
# the host. Xvfb runs on the host; the chroot's GIMP reaches it through X11's abstract socket
# (same network namespace), so nothing is bind-mounted.
set -euo pipefail
cd "$(dirname "$0")/../../.."
T=${ENHANCELAYER_GIMP_CHROOT:-/var/lib/enhancelayer-ci/trixie}
OUT=${1:-docs/images/gimp-dialog.png}
D=:$(( 90 + RANDOM % 100 ))
if command -v gimp-3.0 >/dev/null; then ROOT=""; RUN=(); else ROOT=$T; RUN=(chroot "$T"); fi
W=$ROOT/tmp/elci-shot-$$; rm -rf "$W"; mkdir -p "$W/home" "$W/cfg"
IN=${W#$ROOT}
mounted=()
if [ -n "$ROOT" ]; then
  for m in proc dev dev/pts sys; do
    if ! mountpoint -q "$T/$m"; then
      case $m in proc) mount -t proc proc "$T/proc";; sys) mount -t sysfs sys "$T/sys";; *) mount --bind "/$m" "$T/$m";; esac
      mounted=("$m" "${mounted[@]}")
    fi
  done
fi
cleanup() {
  [ -n "${gpid:-}" ] && kill "$gpid" 2>/dev/null || true
  [ -n "${xpid:-}" ] && kill "$xpid" 2>/dev/null || true
  sleep 1
  for m in "${mounted[@]}"; do umount "$T/$m" || true; done
  rm -rf "$W"
}
trap cleanup EXIT
.venv/bin/python - "$W" <<'PY'
import sys; sys.path.insert(0, "plugin/gimp"); import install_gimp as g
from skimage import data; from PIL import Image
w = sys.argv[1]; g.install(w + "/home/.config/GIMP/3.0")
Image.fromarray(data.astronaut()).save(w + "/astronaut.png")
PY
cp tests/hosts/gimp/dialog_shot.py "$W/"
Xvfb "$D" -screen 0 1100x720x24 -nolisten tcp >/dev/null 2>&1 & xpid=$!
sleep 2
"${RUN[@]}" env DISPLAY="$D" HOME="$IN/home" LANG=C.UTF-8 ENHANCELAYER_CONFIG_DIR="$IN/cfg" \
  ELCI_PHOTO="$IN/astronaut.png" gimp-3.0 -n --no-splash --batch-interpreter=python-fu-eval \
  -b "exec(open('$IN/dialog_shot.py').read())" >"$W/gimp.log" 2>&1 & gpid=$!
# wait until the dialog is mapped (its title is "AI Enhance"), then grab the screen
for i in $(seq 1 90); do
  if xwininfo -display "$D" -root -tree 2>/dev/null | grep -q '"AI Enhance"'; then break; fi
  sleep 1
done
sleep 3
mkdir -p "$(dirname "$OUT")"
import -display "$D" -window root "$OUT"
mogrify -trim +repage "$OUT" 2>/dev/null || true
echo "$OUT"
