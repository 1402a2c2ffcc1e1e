# axis: one image for every role (router, endpoint server, admin); the command picks the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends libxml2 libxslt1.1 curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY axis ./axis
COPY endpoints ./endpoints
COPY schemas ./schemas
RUN pip install .
RUN useradd --system --home /work axis && mkdir -p /work && chown axis /work
USER axis
WORKDIR /work
ENTRYPOINT ["axis"]
CMD ["--help"]
