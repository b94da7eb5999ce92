# Bottleneck Explorer's shared demo in one image: `docker build -t bottleneck-explorer .`, then
# `docker run -p 8501:8501 -v explorer-cache:/data bottleneck-explorer` (docs/hosting.md, "Host it").
# Debian bookworm with Debian's Python 3.11: the same base exists on Docker Hub and as a local
# debootstrap root (scripts/check_image.sh builds and runs it with buildah where Docker is absent).
FROM debian:bookworm-slim

# Behind a proxy with its own certificate authority (a company network, this project's build
# machine): mount the host's bundle into the build and name it here; it stays out of the image.
ARG PIP_CERT=""
ARG PIP_FIND_LINKS=""
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180

# python3-venv for scripts/setup.sh; libgomp1 for numba/torch's OpenMP; curl for the health check
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates curl libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# uid 1000, as Hugging Face Spaces requires; the app and its cache belong to it
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin explorer \
 && mkdir -p /app /data && chown explorer:explorer /app /data
WORKDIR /app
USER explorer

# the packages first (a layer rebuilt only when the requirements change), the same way
# scripts/setup.sh installs them on a machine; --no-package: the source is not copied yet
# (tests/test_house.py: every file setup.sh reads is copied before the step that runs it)
COPY --chown=explorer:explorer requirements.txt requirements-dev.txt ./
COPY --chown=explorer:explorer scripts/setup.sh scripts/
RUN [ -n "$PIP_CERT" ] || unset PIP_CERT; [ -n "$PIP_FIND_LINKS" ] || unset PIP_FIND_LINKS; \
    bash scripts/setup.sh --no-package && rm -rf /home/explorer/.cache/pip

COPY --chown=explorer:explorer . .
# the package itself, editable, now that pyproject.toml and explorer/ are here
RUN bash scripts/setup.sh && rm -rf /home/explorer/.cache/pip

ENV EXPLORER_MODE=demo \
    EXPLORER_CACHE_DIR=/data \
    PORT=8501
VOLUME ["/data"]
EXPOSE 8501
# the server answers its health check only once the libraries are imported (app.py's start-up hook)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/_stcore/health" || exit 1
# scripts/run.sh, as on a machine: its setup step finds the environment built above and goes on;
# it sets the malloc and numba settings and starts app.py's server. EXPLORER_MODE picks the mode.
CMD ["sh", "-c", "exec bash scripts/run.sh --server.port \"$PORT\" --server.address 0.0.0.0"]
