# deputy-webhook: one static binary, numeric non-root user, runs with a read-only root filesystem
# (it writes nothing; TLS comes from a mounted Secret, or through the API with --tls-secret). linux/amd64.
# Build the binary first: cargo build --release -p deputy-webhook
# docker build -f images/webhook.Dockerfile -t deputy-webhook .
FROM scratch
COPY target/x86_64-unknown-linux-gnu/release/deputy-webhook /deputy-webhook
USER 65532:65532
ENTRYPOINT ["/deputy-webhook"]
