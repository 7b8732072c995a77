# goldproxy image: a static binary on a hardened base.
FROM golang:1.26 AS build
WORKDIR /src
ENV GOEXPERIMENT=jsonv2 CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -ldflags="-s -w" -o /out/goldproxy ./cmd/goldproxy

FROM cgr.dev/chainguard/static:latest
COPY --from=build /out/goldproxy /usr/bin/goldproxy
USER 65532:65532
EXPOSE 5000
VOLUME /data
ENTRYPOINT ["/usr/bin/goldproxy"]
CMD ["serve", "--listen", ":5000", "--data-dir", "/data"]
