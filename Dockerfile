# pushgate's container: a static binary on distroless, run as a non-root user.
#   docker build -t pushgate --build-arg VERSION=v1.2.3 .   (or: make docker)
#   docker run -p 8080:8080 pushgate --api-key app:<secret>
# cmd/pushgate/dockerfile_test.go builds the binary with the `go build` line
# below (its flags, CGO_ENABLED=0) and checks it is static and answers
# --version, and that the HEALTHCHECK and ENTRYPOINT name what is copied.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo), reproducible (trimpath), stripped; version facts come from
# Go's build info (VCS stamping needs .git, which .dockerignore keeps out, so
# the version is passed in).
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/pushgate ./cmd/pushgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pushgate /pushgate
USER nonroot:nonroot
EXPOSE 8080
ENV PUSHGATE_ADDR=:8080
# distroless has no curl: the binary probes itself (GET /healthz on the port
# of PUSHGATE_ADDR, over loopback).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
	CMD ["/pushgate", "healthcheck"]
ENTRYPOINT ["/pushgate"]
