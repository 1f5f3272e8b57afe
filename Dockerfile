# onc-pipeline: the harvester daemon, and (target `emulator`) the offline emulator.
# Build: docker build -t onc-pipeline .    Run: see docs/operations.md and docker-compose.yml.
#
# The base is Debian 12 with Debian's own Python 3.11, so the image can be rebuilt exactly
# from Debian's packages: CI makes debian:bookworm-slim locally with mmdebstrap and builds
# this file unchanged (tests/container/). Dependency versions are pinned in requirements.lock.

FROM debian:bookworm-slim AS python
# ca-certificates: the Oceans API is HTTPS-only. Debian versions are not pinned: a stable
# release's archive keeps only the current (security-fixed) version of each package, so a
# pin would break the build at the next fix. Python's own dependencies are pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM python AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# gcc, libc6-dev and python3-dev compile the package's C modules (hatch_build.py); the
# runtime stage gets only the built modules, inside the virtual environment.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv gcc libc6-dev python3-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# A virtual environment is the unit copied into the runtime stage: no compilers there.
RUN python3 -m venv /opt/onc-pipeline
COPY requirements.lock ./
RUN /opt/onc-pipeline/bin/pip install --no-deps --requirement requirements.lock
COPY pyproject.toml README.md hatch_build.py ./
COPY pipeline ./pipeline
# --no-deps: every dependency comes from the lock; `pip check` fails the build if the lock
# misses one, the imports (-P: from the venv, not /src) if a C module was not compiled.
# Then pip itself goes: the runtime stage installs nothing.
RUN /opt/onc-pipeline/bin/pip install --no-deps /src \
    && /opt/onc-pipeline/bin/pip check \
    && /opt/onc-pipeline/bin/python -P -c "import pipeline.outputs._lines, pipeline._columns" \
    && /opt/onc-pipeline/bin/pip uninstall --yes pip setuptools

FROM python AS base
# A fixed uid/gid so volume ownership is predictable across rebuilds.
RUN groupadd --system --gid 10001 onc \
    && useradd --system --uid 10001 --gid onc --home-dir /var/lib/onc-pipeline \
       --no-create-home --shell /usr/sbin/nologin onc \
    && mkdir -p /var/lib/onc-pipeline/state /var/lib/onc-pipeline/data /etc/onc-pipeline \
    && chown -R onc:onc /var/lib/onc-pipeline
COPY --from=build /opt/onc-pipeline /opt/onc-pipeline
ENV PATH=/opt/onc-pipeline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ONC_PIPELINE_LOGGING__FORMAT=json
WORKDIR /var/lib/onc-pipeline
# Numeric, so runtimes that enforce "non-root" (Kubernetes runAsNonRoot) can verify it.
USER 10001:10001
STOPSIGNAL SIGTERM

# The emulator: no volumes, and a healthcheck on its own port (it serves no /healthz).
FROM base AS emulator
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8080), 3).close()"]
ENTRYPOINT ["onc-pipeline", "emulator"]
CMD ["--host", "0.0.0.0", "--token", "demo-token"]

# The harvester (the default target).
FROM base AS runtime
LABEL org.opencontainers.image.title="onc-pipeline" \
      org.opencontainers.image.description="Unattended Ocean Networks Canada harvester"
COPY config/compose-demo.yaml /etc/onc-pipeline/config.yaml
# JSON log lines on stdout; the ops server listens on every interface of the container (the
# port is only reachable where it is published); state and data live on volumes. The token
# comes from the `onc_token` secret (/run/secrets/onc_token) or $ONC_TOKEN.
ENV ONC_PIPELINE_OPS__BIND=0.0.0.0:9108 \
    ONC_PIPELINE_STATE__URL=sqlite:////var/lib/onc-pipeline/state/onc-pipeline.db \
    ONC_PIPELINE_OUTPUT__ROOT=/var/lib/onc-pipeline/data
VOLUME ["/var/lib/onc-pipeline/state", "/var/lib/onc-pipeline/data"]
EXPOSE 9108
# No curl in a slim image: the standard library probes /healthz on the configured port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request as u; p=os.environ.get('ONC_PIPELINE_OPS__BIND','0.0.0.0:9108').rpartition(':')[2]; sys.exit(0 if u.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=4).status == 200 else 1)"]
# The daemon drains for up to 20 s after SIGTERM: stop with `docker stop -t 45` or
# compose's stop_grace_period.
ENTRYPOINT ["onc-pipeline"]
CMD ["run", "--config", "/etc/onc-pipeline/config.yaml"]
