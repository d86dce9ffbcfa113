#!/usr/bin/env bash
# Create (or bring up to date) the Triton server environment and its server directory.
#
#   bash deploy/setup_server_env.sh [VENV]        (default VENV: .venv-server)
#
# Environment variables: PYTHON (base interpreter, default python3.11).
#
# Result:
#   VENV/                 Python 3.11 virtual environment with deploy/server-requirements.txt
#   VENV/triton/          the server directory used by coffea_lorentz.serve and launch_triton.sh:
#     bin/tritonserver        -> the binary shipped in the nvidia-pytriton wheel
#     backends/python/        the python backend, with triton_python_backend_stub for this Python
#     caches/                 -> the response-cache plugins of the wheel
#     env.sh                  LD_LIBRARY_PATH / PATH settings to source before launching
# Running it again changes nothing that is already in place.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/server-requirements.txt"
venv="${1:-.venv-server}"
python="${PYTHON:-python3.11}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup_server_env: creating $venv with $python"
    "$python" -m venv "$venv"
fi
venv="$(cd "$venv" && pwd)"
vpython="$venv/bin/python"

version="$("$vpython" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if [[ "$version" != "3.11" ]]; then
    echo "setup_server_env: $venv has Python $version; the server environment needs 3.11" >&2
    exit 1
fi

no_deps="$(sed -n 's/^# no-deps: *//p' "$requirements")"
if "$vpython" - "$requirements" $no_deps <<'PY'
import sys
from importlib import metadata
wanted = [line.split("#")[0].strip() for line in open(sys.argv[1])] + sys.argv[2:]
for pin in filter(None, wanted):
    name, version = pin.split("==")
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if installed.split("+")[0] != version:
        sys.exit(1)
PY
then
    echo "setup_server_env: $venv already has the pinned packages"
else
    "$vpython" -m pip install --quiet -r "$requirements"
    # shellcheck disable=SC2086
    "$vpython" -m pip install --quiet --no-deps $no_deps
fi

site="$("$vpython" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
wheel="$site/pytriton/tritonserver"
libs="$site/nvidia_pytriton.libs"
pylibdir="$("$vpython" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
stub="$wheel/python_backend_stubs/$version/triton_python_backend_stub"
for needed in "$wheel/bin/tritonserver" "$wheel/backends/python/libtriton_python.so" "$stub" "$libs"; do
    if [[ ! -e "$needed" ]]; then
        echo "setup_server_env: $needed is missing; reinstall nvidia-pytriton in $venv" >&2
        exit 1
    fi
done
if [[ ! -e "$pylibdir/libpython$version.so.1.0" ]]; then
    echo "setup_server_env: $pylibdir/libpython$version.so.1.0 is missing; the python backend" \
        "stub needs a shared libpython (build Python with --enable-shared)" >&2
    exit 1
fi

server="$venv/triton"
mkdir -p "$server/bin" "$server/backends/python"
ln -sfn "$wheel/bin/tritonserver" "$server/bin/tritonserver"
ln -sfn "$wheel/caches" "$server/caches"
for file in libtriton_python.so triton_python_backend_utils.py; do
    ln -sfn "$wheel/backends/python/$file" "$server/backends/python/$file"
done
# The stub is copied, not linked: the backend looks for it next to libtriton_python.so.
if ! cmp -s "$stub" "$server/backends/python/triton_python_backend_stub"; then
    cp "$stub" "$server/backends/python/triton_python_backend_stub.tmp"
    chmod +x "$server/backends/python/triton_python_backend_stub.tmp"
    mv "$server/backends/python/triton_python_backend_stub.tmp" "$server/backends/python/triton_python_backend_stub"
fi
cat > "$server/env.sh.tmp" <<ENV
# Source before running $server/bin/tritonserver (written by deploy/setup_server_env.sh).
# The python backend embeds the first python3 on PATH, so this environment's bin comes first.
export PATH="$venv/bin:\${PATH}"
export LD_LIBRARY_PATH="$libs:$pylibdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
unset PYTHONPATH PYTHONHOME
ENV
mv "$server/env.sh.tmp" "$server/env.sh"

"$vpython" -c 'import numpy, sys; sys.exit(0 if int(numpy.__version__.split(".")[0]) < 2 else 1)' || {
    echo "setup_server_env: numpy >= 2 in $venv; the python backend needs numpy < 2" >&2
    exit 1
}
echo "setup_server_env: server directory ready at $server"
