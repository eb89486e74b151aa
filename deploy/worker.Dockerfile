# darkroom-worker: runs Stable Diffusion jobs through ONNX Runtime.
# Build from the repository root:
#   docker build -f deploy/worker.Dockerfile -t darkroom/worker:cpu .                      (CPU)
#   docker build -f deploy/worker.Dockerfile --build-arg ORT_KIND=gpu -t darkroom/worker:gpu .   (CUDA)
# Build arguments:
#   ORT_KIND     cpu (debian:bookworm-slim, wheel `onnxruntime`) or gpu (CUDA 13 + cuDNN 9
#                runtime image, wheel `onnxruntime-gpu`)
#   ORT_VERSION  ONNX Runtime version taken from PyPI (empty: tools/setup-ort.sh's default)
#   CUDA_IMAGE   the GPU base image; it must carry CUDA 13.x and cuDNN 9 and a glibc at least
#                as new as bookworm's (2.36), which the Ubuntu 24.04 images have
# Works with BuildKit and with the classic builder (which also builds the unused base stage).
ARG ORT_KIND=cpu
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer (see api.Dockerfile).
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY worker/Cargo.toml worker/
COPY api/Cargo.toml api/
COPY tests/Cargo.toml tests/
COPY tools/bench/Cargo.toml tools/bench/
RUN mkdir -p shared/src && touch shared/src/lib.rs && (cargo fetch --locked || true)
COPY . .
RUN cargo build --release --locked -p darkroom-worker \
 && install -D -m 0755 target/release/darkroom-worker /out/darkroom-worker

# ONNX Runtime's shared library, unpacked from its PyPI wheel by the same script developers use.
FROM python:3.12-slim-bookworm AS ort
ARG ORT_KIND
ARG ORT_VERSION=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
COPY tools/setup-ort.sh /src/tools/setup-ort.sh
RUN ORT_VERSION="${ORT_VERSION}" bash /src/tools/setup-ort.sh "${ORT_KIND}" \
 && ls -l /src/.ort/lib

FROM debian:bookworm-slim AS runtime-cpu
FROM ${CUDA_IMAGE} AS runtime-gpu

FROM runtime-${ORT_KIND}
ARG ORT_KIND
LABEL org.opencontainers.image.title="darkroom-worker" \
      darkroom.ort-kind="${ORT_KIND}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin darkroom \
 && mkdir -p /models
COPY --from=ort /src/.ort/lib/ /opt/onnxruntime/lib/
COPY --from=build /out/darkroom-worker /usr/local/bin/darkroom-worker
USER darkroom:darkroom
# The worker opens ONNX Runtime from here (the CUDA provider library sits next to it).
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so
# Model directories (Optimum ONNX exports) are mounted under /models, e.g.
#   docker run -v /srv/models:/models:ro darkroom/worker:gpu darkroom-worker run --model sd15=/models/sd15 --ep cuda
# Models can also come from DARKROOM_MODELS=name=dir,name=dir.
CMD ["darkroom-worker", "run"]
