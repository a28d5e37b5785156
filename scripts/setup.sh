#!/usr/bin/env bash
# One-command setup for TopoClear on Debian 12 (run as root from anywhere; idempotent).
#  - Debian's QGIS 3.22, GDAL and rasterio (system Python 3.11)
#  - a venv at .venv made from /usr/bin/python3 with --system-site-packages
#  - the pinned Python packages of requirements.txt
#  - build/plugins/topoclear -> this folder, put on the venv's path so `import topoclear` works
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(qgis python3-qgis qgis-providers gdal-bin python3-gdal python3-rasterio
              python3-pytest python3-venv python3-scipy python3-skimage xvfb xauth imagemagick time)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv from /usr/bin/python3"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt

# Make the plugin importable as `topoclear` (the repository root is the plugin folder).
mkdir -p build/plugins
ln -sfn "$ROOT" build/plugins/topoclear
SITE="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT/build/plugins" > "$SITE/topoclear_plugin_path.pth"

.venv/bin/python - <<'PY'
import numpy, torch, rasterio
from osgeo import gdal
from qgis.core import Qgis
print(f"[setup] ok: QGIS {Qgis.QGIS_VERSION}, GDAL {gdal.__version__}, rasterio {rasterio.__version__}, "
      f"numpy {numpy.__version__}, torch {torch.__version__}")
PY
