# darkroom-api: the stateless HTTP front end (also runs `migrate`, `tenant create`, `token issue`).
# Build from the repository root:
#   docker build -f deploy/api.Dockerfile -t darkroom/api .
# Works with BuildKit and with the classic builder.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer, so that editing the sources does not download every
# crate again. Only the manifests are needed for that (shared/ infers its library target, hence
# the empty stand-in, which the full copy below replaces). A workspace member added later and not
# listed here just makes this step fail harmlessly: the build below fetches whatever is missing
# (a member listed here that no longer exists fails the COPY: keep the list in step with
# Cargo.toml's `members`).
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY worker/Cargo.toml worker/
COPY api/Cargo.toml api/
COPY tests/Cargo.toml tests/
COPY tools/bench/Cargo.toml tools/bench/
RUN mkdir -p shared/src && touch shared/src/lib.rs && (cargo fetch --locked || true)
COPY . .
RUN cargo build --release --locked -p darkroom-api \
 && install -D -m 0755 target/release/darkroom-api /out/darkroom-api

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin darkroom
COPY --from=build /out/darkroom-api /usr/local/bin/darkroom-api
USER darkroom:darkroom
ENV DARKROOM_LISTEN=0.0.0.0:8080
EXPOSE 8080
# The database and Redis come from DATABASE_URL and REDIS_URL (see docker-compose.yml).
CMD ["darkroom-api", "serve", "--listen", "0.0.0.0:8080"]
