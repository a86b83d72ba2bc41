# deputy-agent: the static binary at /deputy-agent and nothing else, for linux/amd64 and
# linux/arm64. Build the binaries first (make build: both architectures), then
#   docker build -f images/agent.Dockerfile -t deputy-agent .            (this machine's platform)
#   docker buildx build --platform linux/amd64,linux/arm64 -f images/agent.Dockerfile -t REPO/deputy-agent:TAG --push .
# Nothing runs during the build (no RUN), so building the arm64 image needs no emulation:
# BuildKit's TARGETARCH picks the stage holding that architecture's binary.
FROM scratch AS bin-amd64
COPY target/x86_64-unknown-linux-gnu/release/deputy-agent /deputy-agent

FROM scratch AS bin-arm64
COPY target/aarch64-unknown-linux-gnu/release/deputy-agent /deputy-agent

FROM bin-${TARGETARCH}
USER 65532:65532
ENTRYPOINT ["/deputy-agent"]
