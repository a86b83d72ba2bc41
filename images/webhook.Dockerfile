# deputy-webhook: one static binary, numeric non-root user, runs with a read-only root filesystem
# (it writes nothing; TLS comes from a mounted Secret, or through the API with --tls-secret), for
# linux/amd64 and linux/arm64. Build the binaries first (make build: both architectures), then
#   docker build -f images/webhook.Dockerfile -t deputy-webhook .        (this machine's platform)
#   docker buildx build --platform linux/amd64,linux/arm64 -f images/webhook.Dockerfile -t REPO/deputy-webhook:TAG --push .
# BuildKit's TARGETARCH picks the stage holding that architecture's binary (no RUN, no emulation).
FROM scratch AS bin-amd64
COPY target/x86_64-unknown-linux-gnu/release/deputy-webhook /deputy-webhook

FROM scratch AS bin-arm64
COPY target/aarch64-unknown-linux-gnu/release/deputy-webhook /deputy-webhook

FROM bin-${TARGETARCH}
USER 65532:65532
ENTRYPOINT ["/deputy-webhook"]
