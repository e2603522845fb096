# syntax=docker/dockerfile:1
# The API's image: gunicorn serving wsgi:app with gunicorn.conf.py, as a non-root user.
#   docker build -t todo .
#   docker run --rm --env-file .env todo flask db upgrade      # once per release (direct DB URL)
#   docker run -d -p 8000:8000 --env-file .env todo            # the API
# README.md, "Deploying", has the details.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: resolve and build every dependency into a virtualenv ---------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Compilers only here, for any dependency that ships no wheel for this platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY todo ./todo
COPY cli.py wsgi.py ./
# The pinned dependencies of setup.cfg, then the project itself removed again:
# the code runs from /app, beside migrations/ (the factory finds them there).
RUN /opt/venv/bin/pip install . && /opt/venv/bin/pip uninstall -y todo

# --- final: the interpreter, the virtualenv and the code; no compilers --------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000
RUN groupadd --system todo && useradd --system --gid todo --no-create-home --home-dir /app todo
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY todo ./todo
COPY migrations ./migrations
COPY cli.py wsgi.py gunicorn.conf.py ./
USER todo
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
# gunicorn.conf.py (in the working directory) takes everything from the environment.
CMD ["gunicorn", "wsgi:app"]
