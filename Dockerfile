# One image for web and workers. CPU torch by default; for GPU workers build with
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=metaweb.settings.base METAWEB_DATA_DIR=/data

WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
# torch first, pinned, from the chosen index: the project's range then installs nothing more.
RUN pip install --index-url "$TORCH_INDEX" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY metaweb ./metaweb
COPY apps ./apps
COPY workers ./workers
RUN pip install .
COPY . .
# /app/staticfiles exists, owned by the app user, so that compose's "static" volume starts writable.
RUN useradd --create-home --uid 1000 metaweb && mkdir -p /data /app/staticfiles && chown metaweb /data /app/staticfiles
USER metaweb
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "metaweb.asgi:application"]
