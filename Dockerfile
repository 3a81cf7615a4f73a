# syntax=docker/dockerfile:1
# Static binary on distroless (CA certificates included, runs as nonroot,
# needs no writable filesystem).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/rotator-dev/rotator/internal/version.Version=${VERSION}" \
      -o /out/rotator ./cmd/rotator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rotator /rotator
USER 65532:65532
ENTRYPOINT ["/rotator"]
CMD ["run-once"]
