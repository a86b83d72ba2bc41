# deputy-agent: the static binary at /deputy-agent and nothing else (linux/amd64).
# Build the binary first: cargo build --release -p deputy-agent
# docker build -f images/agent.Dockerfile -t deputy-agent .
FROM scratch
COPY target/x86_64-unknown-linux-gnu/release/deputy-agent /deputy-agent
USER 65532:65532
ENTRYPOINT ["/deputy-agent"]
