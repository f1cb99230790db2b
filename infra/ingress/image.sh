#!/usr/bin/env bash
# `make image`: builds the upload ingress's FROM scratch image
# (infra/ingress/Dockerfile) with the real Docker daemon. It uses the daemon
# that DOCKER_HOST (or the default socket) names when it answers; otherwise
# it starts a temporary dockerd (root; vfs, no networking set-up) with its
# state in a temporary directory and stops it by its pid when done.
# Output: the image $IMAGE in the daemon used, and dist/ingress/image.tar
# (`docker save`; `docker load -i` it, or push it to ECR with
# `crane push`/`skopeo copy docker-archive:...`).
#
# Environment: IMAGE (default airlock-ingress:latest), IMAGE_ARCH (amd64 or
# arm64, default amd64: template parameter IngressArchitecture X86_64),
# INGRESS_CONFIG (default infra/airlock.yaml, the api function's), GO, VERSION.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
image=${IMAGE:-airlock-ingress:latest}
arch=${IMAGE_ARCH:-amd64}
go=${GO:-go}
version=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo devel)}
ctx=$root/dist/ingress

case $arch in amd64 | arm64) ;; *) echo "image.sh: IMAGE_ARCH=$arch: want amd64 or arm64" >&2; exit 2 ;; esac
rm -rf "$ctx"
mkdir -p "$ctx"
echo "go build ./shared/cmd/ingress (linux/$arch, CGO off) -> dist/ingress/ingress"
CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$go" build -trimpath -ldflags "-s -w -X main.version=$version" -o "$ctx/ingress" ./shared/cmd/ingress
cp infra/ingress/Dockerfile "$ctx/Dockerfile"
cp "${INGRESS_CONFIG:-infra/airlock.yaml}" "$ctx/airlock.yaml"

# Debian's CLI matches Debian's daemon (20.10); another CLI works too.
docker=/usr/bin/docker
[ -x "$docker" ] || docker=$(command -v docker) || { echo "image.sh: no docker CLI (Debian: apt-get install docker.io)" >&2; exit 1; }

if ! "$docker" info >/dev/null 2>&1; then
  dockerd=$(command -v dockerd) || { echo "image.sh: no Docker daemon answers and dockerd is not installed (Debian: apt-get install docker.io)" >&2; exit 1; }
  if [ "$(id -u)" != 0 ]; then
    echo "image.sh: no Docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-unset}) and starting one needs root: start dockerd, or run make image as root" >&2
    exit 1
  fi
  tmp=$(mktemp -d /tmp/airlock-image-XXXXXX) # short: the socket path must stay under 108 bytes
  echo '{}' >"$tmp/daemon.json"              # not the machine's /etc/docker/daemon.json
  "$dockerd" --data-root "$tmp/root" --exec-root "$tmp/exec" --pidfile "$tmp/pid" -H "unix://$tmp/sock" \
    --storage-driver vfs --iptables=false --ip-masq=false --bridge=none --config-file "$tmp/daemon.json" \
    >"$tmp/dockerd.log" 2>&1 &
  dpid=$!
  stop_dockerd() {
    kill "$dpid" 2>/dev/null || true
    wait "$dpid" 2>/dev/null || true
    rm -rf "$tmp"
  }
  trap stop_dockerd EXIT
  export DOCKER_HOST=unix://$tmp/sock
  for _ in $(seq 1 120); do
    "$docker" info >/dev/null 2>&1 && break
    kill -0 "$dpid" 2>/dev/null || { echo "image.sh: temporary dockerd exited:" >&2; tail -20 "$tmp/dockerd.log" >&2; exit 1; }
    sleep 0.5
  done
  "$docker" info >/dev/null 2>&1 || { echo "image.sh: temporary dockerd not up after 60 s:" >&2; tail -20 "$tmp/dockerd.log" >&2; exit 1; }
  echo "no Docker daemon answered: started a temporary dockerd (pid $dpid, state in $tmp, removed at the end)"
fi

# FROM scratch pulls nothing; the classic builder needs no buildx plugin.
DOCKER_BUILDKIT=0 "$docker" build --quiet --platform "linux/$arch" -t "$image" "$ctx" >/dev/null
"$docker" image inspect --format "$image: {{.Id}} {{.Os}}/{{.Architecture}} {{.Size}} bytes, entrypoint {{json .Config.Entrypoint}}" "$image"
"$docker" save -o "$ctx/image.tar" "$image"
ls -l "$ctx/image.tar"
