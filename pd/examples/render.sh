#!/bin/sh
# Headless render of 3-render.pd beside this script (what `make demo` runs): encode the bundled
# loop, generate a fibo pattern, bend one layer, decode in Pd, write OUT/demo.wav.
# usage: render.sh [OUT]   (default: ./out); needs pd >= 0.54 and the built [unravel~]
# Earlier renders are kept: a second run writes OUT/demo-2.wav and OUT/demo-latents-2/, ...
set -e
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "${1:-out}"
out=$(cd "${1:-out}" && pwd)
n=""
k=1
while [ -e "$out/demo$n.wav" ] || [ -e "$out/demo-latents$n" ]; do
    k=$((k + 1))
    n="-$k"
done
mkdir -p "$out/demo-latents$n"
log="$out/demo-pd$n.log"
status=0
timeout 300 "${PD:-pd}" -nogui -batch -noaudio -nomidi -noprefs -stderr -r 44100 \
    -path "$here/.." -open "$here/3-render.pd" -send "demo-out $out/demo-latents$n" \
    >"$log" 2>&1 || status=$?
cat "$log"
if [ "$status" != 0 ] || grep -Eiq "^error|couldn't create|traceback|segmentation" "$log"; then
    echo "demo: the Pd render failed (log: $log)" >&2
    exit 1
fi
mv "$out/demo-latents$n/demo.wav" "$out/demo$n.wav"
echo "demo: wrote $out/demo$n.wav"
