# sinkframe connector image: `docker build -t sinkframe .`
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY sinkframe ./sinkframe
COPY plugins ./plugins
# Package data (setup.cfg): the built-in plugins' table specs, and the connectors `sinkframe init` writes.
COPY schema ./schema
COPY configs ./configs
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
# libpq-free: psycopg[binary] and confluent-kafka wheels bundle their C libraries.
COPY --from=build /install /usr/local
RUN groupadd --system sinkframe && useradd --system --gid sinkframe --home-dir /app sinkframe
WORKDIR /app
COPY --chown=sinkframe:sinkframe configs ./configs
COPY --chown=sinkframe:sinkframe schema ./schema
USER sinkframe
ENV PYTHONUNBUFFERED=1 \
    SINKFRAME_METRICS_PORT=9108
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
    CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"SINKFRAME_METRICS_PORT\"]}/healthz', timeout=2)"
ENTRYPOINT ["sinkframe"]
CMD ["run", "configs/raw.yaml", "configs/enriched.yaml", "configs/smart_breaker.yaml"]
