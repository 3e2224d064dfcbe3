"""The repository's container images built and run without a Docker daemon (podman, rootful,
runc, cgroupfs), on a machine that cannot pull base images: stand-ins are built from Debian
packages (`pipelines.images.standins`), the images from their own Dockerfiles
(`pipelines.images.build`), and each container runs with the user, read-only root filesystem,
capabilities and writable mounts its manifest gives it (`pipelines.images.containers`).

docs/deploy.md, "Building images without a Docker daemon", says what is substituted and why.
"""
