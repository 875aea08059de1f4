# gostocks: a multi-stage build. The build stage runs the same `cargo build` as the README's
# "Running in production"; the runtime image is Debian slim with the one binary, as a non-root
# user. Build: `docker build -t gostocks .`; see docker-compose.yml for the whole stack.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gostocks-runner

FROM debian:bookworm-slim
# ca-certificates: TLS to managed Kafka, Postgres and Redis; curl: the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gostocks
COPY --from=build /src/target/release/gostocks /usr/local/bin/gostocks
USER 10001:10001
# Inside a container the servers listen on every interface (the binary's defaults stay
# 127.0.0.1), and logs are JSON lines for the log shipper.
ENV GOSTOCKS_HTTP_ADDR=0.0.0.0:8080 \
    GOSTOCKS_GRPC_ADDR=0.0.0.0:50051 \
    GOSTOCKS_LOG_FORMAT=json
EXPOSE 8080 50051
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["gostocks"]
CMD ["run"]
