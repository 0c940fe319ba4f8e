# ragfence image. pg_query_go needs cgo, so the build stage has gcc; the
# cache mounts keep its one-minute libpg_query compile out of rebuilds.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -o /out/ragfence ./cmd/ragfence

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/ragfence ragfence \
    && mkdir -p /var/lib/ragfence/demo && chown -R ragfence /var/lib/ragfence
COPY --from=build /out/ragfence /usr/local/bin/ragfence
USER ragfence
WORKDIR /var/lib/ragfence
EXPOSE 8080
ENTRYPOINT ["ragfence"]
