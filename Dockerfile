# gradio-chat-gateway: gunicorn with gevent workers, as a non-root user.
# Build: docker build -t gradio-chat-gateway .   Run: docker run -p 8000:8000 gradio-chat-gateway
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1 \
    LISTEN=0.0.0.0 \
    PORT=8000

WORKDIR /app

# Runtime dependencies only (requirements.txt); every wheel is prebuilt, so no compiler is needed.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --shell /usr/sbin/nologin gateway

# The package itself: the `gradio-chat-gateway` command (its dependencies are installed above).
COPY pyproject.toml wsgi.py gunicorn.conf.py ./
COPY gateway/ ./gateway/
RUN pip install --no-cache-dir --no-deps . && rm -rf build ./*.egg-info

USER 10001:10001
EXPOSE 8000

# The slim image has no curl: ask /healthz with Python itself.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# Exec form, and `serve` execs gunicorn: gunicorn is PID 1 and gets SIGTERM (and SIGHUP) itself,
# so open streams get GRACEFUL_TIMEOUT to finish. Workers default to the container's CPU limit.
CMD ["gradio-chat-gateway", "serve"]
