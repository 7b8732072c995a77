# syntax=docker/dockerfile:1
# goldproxy's image, for users with Docker. CI builds the release image without Docker
# with cmd/goldproxy-image (and tests it: reproducible, judged by goldproxy's own
# `hardened` policy); this Dockerfile runs that same builder and copies the files it
# assembles onto scratch, so both ship the same filesystem and config:
# /usr/bin/goldproxy (static), /etc/passwd and /etc/group with nonroot (65532), Debian's
# CA bundle, empty /tmp and /data, user 65532:65532, the OCI labels.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) \
#     --build-arg VERSION=$(git describe --tags --always) --build-arg REVISION=$(git rev-parse HEAD) \
#     --output type=oci,dest=dist/goldproxy.oci.tar,rewrite-timestamp=true .
#
# The build stage is pinned by digest (golang 1.26.4 on Debian; the digest is the one
# sigstore/rekor v1.5.3 pins). go.mod asks for a newer Go: GOTOOLCHAIN=auto fetches it from
# the Go module proxy. Update the pin with `goldproxy check-dockerfile Dockerfile`,
# which prints the pinned spelling of a tag. The runtime stage is scratch: no base image.
FROM --platform=$BUILDPLATFORM golang:1.26.4@sha256:f96cc555eb8db430159a3aa6797cd5bae561945b7b0fe7d0e284c63a3b291609 AS build
ARG TARGETARCH
ARG SOURCE_DATE_EPOCH=0
ARG VERSION=dev
ARG REVISION=unknown
WORKDIR /src
ENV GOEXPERIMENT=jsonv2 CGO_ENABLED=0 GOTOOLCHAIN=auto
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# ca-certificates is installed in the golang image (Debian): its bundle is the one shipped.
RUN SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} go run ./cmd/goldproxy-image \
      --platform linux/${TARGETARCH} --version ${VERSION} --revision ${REVISION} \
      --no-sbom --output /out/oci --rootfs /out/rootfs

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
COPY --from=build /out/rootfs/ /
COPY --from=build --chown=65532:65532 /out/rootfs/data /data
COPY --from=build --chown=65532:65532 /out/rootfs/home/nonroot /home/nonroot
LABEL org.opencontainers.image.source="https://github.com/goldproxy/goldproxy" \
      org.opencontainers.image.title="goldproxy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/usr/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 5000 9102
VOLUME /data
WORKDIR /
ENTRYPOINT ["/usr/bin/goldproxy"]
CMD ["serve", "--listen", ":5000", "--data-dir", "/data"]
