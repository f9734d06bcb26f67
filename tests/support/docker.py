"""Whether tests that need containers (testcontainers) can run here."""

from __future__ import annotations


def docker_unavailable_reason(what: str) -> str | None:
    """Why no container can be started here, or None if a Docker engine answers a ping.

    ``what`` completes the skip reason: "<what> wherever Docker is available".
    """
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable engine"
        return (f"no Docker engine reachable ({type(exc).__name__}: {str(exc)[:160]}); {what} wherever Docker is "
                "available")
    return None
