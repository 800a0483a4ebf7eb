# One image for both processes of mnist-service (docker-compose.yml picks the command):
#   api:    uvicorn api.main:app --host 0.0.0.0 --port 8000   (the default CMD)
#   worker: celery -A worker.app worker --loglevel INFO
# Settings are environment variables (see .env.example); models go to /data/models,
# MNIST to /data/mnist (both volumes in compose). Runs as uid 10001, not root.

# --- base: the Python image plus any extra CA certificates (docker/ca-certificates/) ---
FROM python:3.11-slim AS base
# Optional: PEM files named *.crt in docker/ca-certificates/ are trusted by the build
# (pip) and by the running service (MNIST download), e.g. a corporate TLS proxy's CA.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/extra/
RUN find /usr/local/share/ca-certificates/extra -type f ! -name '*.crt' -delete \
 && if [ -n "$(ls -A /usr/local/share/ca-certificates/extra)" ]; then \
      update-ca-certificates; \
    fi

# --- build: a virtual environment with the dependencies, then the package ---
FROM base AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone: editing the code does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && python -m pip install -r /tmp/requirements.txt
# Then the tree (.dockerignore keeps tests, data and secrets out); setuptools installs
# the packages pyproject.toml lists, the rest stays in this stage.
COPY . .
RUN python -m pip install --no-deps . \
 && python -m pip check \
 && python -m pip uninstall -y -q pip setuptools

# --- runtime: the venv only, no compilers, no pip cache, no source tree ---
FROM base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_DIR=/data/models \
    MNIST_DIR=/data/mnist
# The volume folders exist in the image with the right owner, so new named volumes
# mounted on them start owned by the service user.
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
 && mkdir -p /app /data/models /data/mnist \
 && chown app:app /app /data/models /data/mnist
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
