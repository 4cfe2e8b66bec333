# The touchline binary (every role: serve, collector, aggregator, migrate, …) for
# docker-compose.yml. librdkafka is built from source by the rdkafka crate (needs a C toolchain).
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p touchline && cp target/release/touchline /usr/local/bin/touchline

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/touchline /usr/local/bin/touchline
RUN useradd --system --home /var/lib/touchline touchline && mkdir -p /var/lib/touchline && chown touchline /var/lib/touchline
USER touchline
WORKDIR /var/lib/touchline
ENV TOUCHLINE_DATA_DIR=/var/lib/touchline
EXPOSE 8080
CMD ["touchline", "serve"]
