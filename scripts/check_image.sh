#!/usr/bin/env bash
# Build the container image from the Dockerfile and check it as a host would: start it, wait for
# its health check, and run a short demo soak against it (visitors, a hostile upload, its memory).
# For a machine without Docker: Debian's buildah and debootstrap (installed here if missing).
#   bash scripts/check_image.sh            (SESSIONS=20 visitors by default)
# Too slow for every CI run (a first build downloads torch: 5-15 min); docs/hosting.md, "Host it".
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-bottleneck-explorer}
BASE=docker.io/library/debian:bookworm-slim
PORT=${PORT:-18501}
work=$(mktemp -d /tmp/explorer-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need buildah buildah
need podman podman
need debootstrap debootstrap

# The Dockerfile's base, made from Debian's packages where no registry of images is reachable
if ! podman image exists "$BASE"; then
  echo "making $BASE with debootstrap" >&2
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$work/rootfs" -c . | podman import - "$BASE" >/dev/null
  rm -rf "$work/rootfs"
fi

# pip inside the build trusts this machine's certificate authorities (a proxy of its own), mounted
# for the build only: the image does not keep them
build_args=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  build_args+=(-v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro --build-arg PIP_CERT=/run/host-ca.crt)
fi
t0=$(date +%s)
buildah bud --isolation chroot --layers --format docker "${build_args[@]}" -t "$IMAGE" . >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
t1=$(date +%s)
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
echo "built $IMAGE in $((t1 - t0)) s, $((size / 1024 / 1024)) MB"

# Run it (podman run is refused in this sandbox; buildah runs it with chroot isolation on the
# host's network), with the image's own command, user and environment; its cache stays in the
# container's /data (a bind mount of buildah's chroot run is not seen from the host)
container=$(buildah from "$IMAGE")
mkdir -p "$work/data"
cmd=$(podman image inspect "$IMAGE" --format '{{join .Config.Cmd " "}}')
# one trusted proxy, as behind compose's Caddy or a Space: the soak's visitors say their own address
buildah run --isolation chroot --env PORT="$PORT" --env EXPLORER_TRUSTED_PROXIES=1 "$container" -- sh -c "${cmd#sh -c }" >"$work/server.log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; pkill -f "server.port $PORT" 2>/dev/null || true; buildah rm "$container" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
t2=$(date +%s)
until curl -fsS "http://127.0.0.1:$PORT/_stcore/health" >/dev/null 2>&1; do
  if ! kill -0 "$server" 2>/dev/null || [ $(( $(date +%s) - t2 )) -gt 300 ]; then
    echo "the image's server did not become healthy:"; tail -30 "$work/server.log"; exit 1
  fi
  sleep 1
done
echo "health check green $(( $(date +%s) - t2 )) s after start"
whoami_in=$(buildah run --isolation chroot "$container" -- id -u)
echo "the image runs as uid $whoami_in"

# A short soak against it: visitors on the sample and uploads, a hostile upload and link, a cancel,
# a costly model, an over-limit link; the server's RSS read at quiet moments (bench/bench_demo.py;
# its cache and upload counts read the host's folders, so here they are read inside, at the end)
pid=$(pgrep -f "explorer.ui.serve --server.port $PORT" | head -1)
[ -n "$pid" ] || { echo "the server's process was not found"; exit 1; }
echo "server pid $pid, RSS $(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 )) MB after start"
eval "$(.venv/bin/python -m explorer.process_setup)"
.venv/bin/python bench/bench_demo.py --url "http://127.0.0.1:$PORT" --pid "$pid" --cache "$work/data" \
  --server-log "$work/server.log" --kills 0 --sessions "${SESSIONS:-20}" --parallel 2 --minutes 20 \
  --out bench/results/image_soak.json "$@"
echo "the container's cache after the soak: $(buildah run --isolation chroot "$container" -- du -sm /data | cut -f1) MB (limit: EXPLORER_CACHE_MAX_GB, 5 GB by default)"
echo "upload folders left in the container: $(buildah run --isolation chroot "$container" -- sh -c 'ls -d /tmp/explorer-uploads/upload-* 2>/dev/null | wc -l')"

