# The demo apps: the Rust library app, an HTTP service (http-app), a K8sDeputy.jl-protocol app, and a plain shell app meant to
# run under `deputy-agent run` (busybox for the shell). linux/amd64.
# Build first: cargo build --release -p deputy-agent --examples --all-features
# docker build -f images/demo.Dockerfile -t deputy-demo .
FROM scratch
COPY --from=busybox:stable-musl /bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
# Like Debian-based images: /var/run is a symlink to /run.
RUN ["/bin/busybox", "sh", "-c", "mkdir -p /run /var && ln -s ../run /var/run"]
COPY target/x86_64-unknown-linux-gnu/release/examples/deputy-app /app/deputy-app
COPY target/x86_64-unknown-linux-gnu/release/examples/julia-like /app/julia-like
COPY target/x86_64-unknown-linux-gnu/release/examples/http-app /app/http-app
COPY images/demo/shell-app.sh /app/shell-app.sh
USER 65532:65532
ENTRYPOINT ["/app/deputy-app"]
