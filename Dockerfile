# syntax=docker/dockerfile:1
# Static binary on distroless (CA certificates included, runs as nonroot,
# needs no writable filesystem). The build stage runs on the builder's own
# platform and cross-compiles, so an arm64 image for K3s on a Pi builds
# without emulation: docker buildx build --platform linux/amd64,linux/arm64 .
# The Go image must be at least go.mod's go version (test/image checks).
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/rotator-dev/rotator/internal/version.Version=${VERSION}" \
      -o /out/rotator ./cmd/rotator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rotator /rotator
USER 65532:65532
ENTRYPOINT ["/rotator"]
CMD ["run-once"]
