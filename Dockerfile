# syntax=docker/dockerfile:1
#
# The fledge and fledge-loadgen images, for Docker or Podman with a registry at hand:
#
#   docker build --target fledge         -t fledge:0.1.0 .
#   docker build --target fledge-loadgen -t fledge-loadgen:0.1.0 .
#   (add --build-arg REVISION=$(git rev-parse HEAD) for the revision label)
#
# Static musl release binaries on distroless' static image (CA certificates, passwd with nonroot
# 65532, no shell, no package manager). `cargo xtask image` builds the same images without a
# registry or a daemon; a test in xtask/src/image.rs checks that both agree.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
RUN cargo install cargo-cyclonedx --locked --version 0.5.9
WORKDIR /src
COPY . .
# One build of both binaries (the release profile's fat LTO is slow); musl-gcc compiles the C of
# aws-lc-sys. `.cargo/config.toml` links them with build/link-musl (the toolchain's rust-lld, the
# controller's functions in the order of build/code-order.txt; it needs nm, which binutils has). The caches survive between builds; the binaries are copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --locked --target x86_64-unknown-linux-musl \
      -p fledge-controller --bin fledge -p fledge-loadgen --bin fledge-loadgen \
 && mkdir -p /out/sbom \
 && cp target/x86_64-unknown-linux-musl/release/fledge \
       target/x86_64-unknown-linux-musl/release/fledge-loadgen /out/
# One CycloneDX SBOM per binary (cargo-cyclonedx writes <bin>_bin.cdx.json beside each package's
# Cargo.toml).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo cyclonedx --format json --spec-version 1.5 --target x86_64-unknown-linux-musl \
      --describe binaries --no-build-deps \
 && cp crates/controller/fledge_bin.cdx.json /out/sbom/fledge.cdx.json \
 && cp crates/loadgen/fledge-loadgen_bin.cdx.json /out/sbom/fledge-loadgen.cdx.json

FROM gcr.io/distroless/static-debian12:nonroot AS fledge-loadgen
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/fledge-dev/fledge
LABEL org.opencontainers.image.title="fledge-loadgen" \
      org.opencontainers.image.description="fledge's load generator and Flagger-compatible load tester" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/fledge-loadgen /usr/local/bin/fledge-loadgen
COPY --from=build /out/sbom/fledge-loadgen.cdx.json /sbom/fledge-loadgen.cdx.json
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fledge-loadgen"]
CMD ["serve"]

# The last stage is the default target: the controller.
FROM gcr.io/distroless/static-debian12:nonroot AS fledge
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/fledge-dev/fledge
LABEL org.opencontainers.image.title="fledge" \
      org.opencontainers.image.description="fledge: progressive delivery for Kubernetes (the controller)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/fledge /usr/local/bin/fledge
COPY --from=build /out/sbom/fledge.cdx.json /sbom/fledge.cdx.json
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fledge"]
CMD ["run"]
