# billpay-gateway: release build, then a slim runtime image running as a non-root user.
# No system protoc is needed: build.rs uses the protoc from the protoc-bin-vendored crate.
#
#   docker build -t billpay-gateway .
#   docker run -p 50051:50051 -v "$PWD/config.toml:/etc/billpay/config.toml:ro" \
#     -e BILLPAY__PROVIDERS__INTERSWITCH__CLIENT_SECRET -e REDIS_URL billpay-gateway

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY config/directory.toml ./config/directory.toml
RUN cargo build --release --locked --bin billpay-gateway

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin billpay \
    && mkdir -p /etc/billpay
COPY --from=build /src/target/release/billpay-gateway /usr/local/bin/billpay-gateway
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["billpay-gateway"]
CMD ["serve", "--config", "/etc/billpay/config.toml"]
