# syntax=docker/dockerfile:1
#
# passgate in a container: one static binary on an empty base image, run as
# an unprivileged user, with its SQLite data on a volume.
#
#   docker build -t passgate .
#   docker run -d --name passgate -p 8080:8080 -v passgate-data:/data \
#     -e PASSGATE_PUBLIC_URL=https://auth.example.com \
#     -e PASSGATE_SMTP_URL='smtp://USER:PASS@smtp.example.com:587' \
#     -e PASSGATE_EMAIL_FROM='Acme <no-reply@acme.example>' \
#     -e PASSGATE_SECRET_KEY_FILE=/run/secrets/passgate_secret \
#     -v /etc/passgate/secret:/run/secrets/passgate_secret:ro \
#     passgate
#
# docs/deploy.md explains the settings, the volume and the secret.

ARG RUST_VERSION=1.95

# ---- build: a static musl binary ------------------------------------------------
FROM rust:${RUST_VERSION}-alpine AS build
# A C compiler and musl's headers: the bundled SQLite, ring (TLS and
# signatures) and mimalloc are C and are compiled into the binary. Nothing
# else is linked: TLS is rustls, the CA roots are compiled in (webpki-roots).
RUN apk add --no-cache gcc musl-dev
WORKDIR /src
COPY . .
# Alpine's Rust targets *-linux-musl, whose binaries are static by default.
# The .cargo/config.toml copied above sets SQLX_OFFLINE, so the PostgreSQL
# queries are checked against the committed .sqlx/ cache, with no database.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p passgate-server \
 && install -D -m 0755 target/release/passgate /out/usr/local/bin/passgate
# The data directory, made here because the empty image has no mkdir.
RUN install -d -m 0750 /out/data

# ---- run ---------------------------------------------------------------------------
FROM scratch
COPY --from=build /out/usr/local/bin/passgate /usr/local/bin/passgate
# Owned by the user the server runs as. A new named volume takes this owner;
# a host directory mounted here must be writable by 65532.
COPY --from=build --chown=65532:65532 /out/data /data
# Any unprivileged id works; 65532 is the usual "nonroot".
USER 65532:65532
# Listen on every interface of the container (publish the port with -p).
# The metrics listener too, so a Prometheus on the container network can
# scrape it: do not publish 9090 to the internet.
ENV PASSGATE_LISTEN=0.0.0.0:8080 \
    PASSGATE_METRICS_LISTEN=0.0.0.0:9090 \
    PASSGATE_DATABASE_URL=sqlite:///data/passgate.db
VOLUME ["/data"]
# The working directory is also where SQLite puts temporary files when it
# needs them: the image has no /tmp.
WORKDIR /data
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/passgate"]
CMD ["serve"]
