# onc-pipeline: the harvester daemon (and, with `emulator`, the offline emulator).
# Build: docker build -t onc-pipeline .    Run: see docs/operations.md and docker-compose.yml.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# A virtual environment is the unit copied into the runtime stage: no compilers there.
RUN python -m venv /opt/onc-pipeline
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
RUN /opt/onc-pipeline/bin/pip install --no-cache-dir /src

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="onc-pipeline" \
      org.opencontainers.image.description="Unattended Ocean Networks Canada harvester"
# A fixed uid/gid so volume ownership is predictable across rebuilds.
RUN groupadd --system --gid 10001 onc \
    && useradd --system --uid 10001 --gid onc --home-dir /var/lib/onc-pipeline \
       --no-create-home --shell /usr/sbin/nologin onc \
    && mkdir -p /var/lib/onc-pipeline/state /var/lib/onc-pipeline/data /etc/onc-pipeline \
    && chown -R onc:onc /var/lib/onc-pipeline
COPY --from=build /opt/onc-pipeline /opt/onc-pipeline
COPY config/compose-demo.yaml /etc/onc-pipeline/config.yaml
# JSON log lines on stdout; the ops server listens on every interface of the container (the
# port is only reachable where it is published); state and data live on volumes. The token
# comes from the `onc_token` secret (/run/secrets/onc_token) or $ONC_TOKEN.
ENV PATH=/opt/onc-pipeline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ONC_PIPELINE_LOGGING__FORMAT=json \
    ONC_PIPELINE_OPS__BIND=0.0.0.0:9108 \
    ONC_PIPELINE_STATE__URL=sqlite:////var/lib/onc-pipeline/state/onc-pipeline.db \
    ONC_PIPELINE_OUTPUT__ROOT=/var/lib/onc-pipeline/data
VOLUME ["/var/lib/onc-pipeline/state", "/var/lib/onc-pipeline/data"]
WORKDIR /var/lib/onc-pipeline
# Numeric, so runtimes that enforce "non-root" (Kubernetes runAsNonRoot) can verify it.
USER 10001:10001
EXPOSE 9108
# No curl in a slim image: the standard library probes /healthz on the configured port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request as u; p=os.environ.get('ONC_PIPELINE_OPS__BIND','0.0.0.0:9108').rpartition(':')[2]; sys.exit(0 if u.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=4).status == 200 else 1)"]
# The daemon drains for up to 20 s after SIGTERM: stop with `docker stop -t 45` or
# compose's stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["onc-pipeline"]
CMD ["run", "--config", "/etc/onc-pipeline/config.yaml"]
