#!/usr/bin/env bash
# Run the bundled Triton server on a model repository, in the foreground, without Python glue.
#
#   bash deploy/launch_triton.sh REPOSITORY [extra tritonserver options...]
#
# Environment variables:
#   COFFEA_LORENTZ_SERVER_ENV   server environment (default: .venv-server at the source root),
#                               made by deploy/setup_server_env.sh
#   HOST                        listen address (default 127.0.0.1; 0.0.0.0 to serve other machines)
#   HTTP_PORT GRPC_PORT METRICS_PORT   (default 8000 8001 8002)
#
# Ctrl-C stops the server and its python backend processes.
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit $(( $# < 1 ? 2 : 0 ))
fi
repository="$(cd "$1" && pwd)"
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_dir="${COFFEA_LORENTZ_SERVER_ENV:-$root/.venv-server}"
server="$env_dir/triton"
if [[ ! -x "$server/bin/tritonserver" || ! -f "$server/env.sh" ]]; then
    echo "launch_triton: no server in $server; run: bash deploy/setup_server_env.sh $env_dir" >&2
    exit 1
fi
# shellcheck source=/dev/null
source "$server/env.sh"

exec "$server/bin/tritonserver" \
    --model-repository="$repository" \
    --backend-directory="$server/backends" \
    --cache-directory="$server/caches" \
    --http-address="${HOST:-127.0.0.1}" --http-port="${HTTP_PORT:-8000}" \
    --grpc-address="${HOST:-127.0.0.1}" --grpc-port="${GRPC_PORT:-8001}" \
    --metrics-address="${HOST:-127.0.0.1}" --metrics-port="${METRICS_PORT:-8002}" \
    --allow-gpu-metrics=false \
    --disable-auto-complete-config \
    --strict-readiness=true \
    --exit-on-error=true \
    "$@"
