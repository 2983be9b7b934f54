"""The compose testbed run for real with podman: engine settings, base images, wheelhouse, orchestration."""
