#!/usr/bin/env bash
# The extra install time of requirements-interop.txt (docs/export.md):
# a fresh venv, then requirements.txt + requirements-export.txt (what CI
# installed before), then the same plus requirements-interop.txt; wall and CPU
# seconds of each, and the venv's size, into
# experiments/results/interop_install_time.json.
#   bash experiments/interop_install_time.sh
# The wheels come from pip's cache where an earlier install left them (as on
# CI's machine after the first run); the wall time depends on the machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
t() {  # label, pip arguments...: "label": {"wall_s", "cpu_s"}
  local label=$1; shift
  /usr/bin/time -o "$venv.time" -f "%e %U %S" "$venv/bin/python" -m pip install --quiet "$@" \
      > /dev/null 2>&1
  read -r wall user sys < "$venv.time"
  echo "\"$label\": {\"wall_s\": $wall, \"cpu_s\": $(echo "$user + $sys" | bc)}"
}
base=$(t base -r requirements.txt -r requirements-export.txt)
extra=$(t interop -r requirements.txt -r requirements-export.txt -r requirements-interop.txt)
size=$(du -sm "$venv" | cut -f1)
cat > experiments/results/interop_install_time.json <<JSON
{"command": "bash experiments/interop_install_time.sh", "date": "$(date -u +%F)",
 "load_average_1min_at_end": $(cut -d' ' -f1 /proc/loadavg), "cores": $(nproc),
 $base,
 $extra,
 "venv_mb": $size}
JSON
cat experiments/results/interop_install_time.json
rm -rf "$(dirname "$venv")"
