# presencebot: multi-stage build, slim runtime, non-root user.
# The config is mounted read-only at /etc/presencebot; the alert store lives on /var/lib/presencebot.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY presencebot ./presencebot
COPY adapters ./adapters
COPY logos ./logos
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/presencebot presencebot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER presencebot
WORKDIR /var/lib/presencebot
VOLUME ["/var/lib/presencebot"]
ENTRYPOINT ["presencebot"]
CMD ["run", "--config", "/etc/presencebot/presencebot.toml"]
