"""Writing the settings as the TOML file :func:`streams.runtime.settings.load_settings` reads back."""

from __future__ import annotations

from typing import Any

from streams.runtime.settings import Settings


def settings_to_toml(settings: Settings) -> str:
    """``settings`` as a settings file :func:`streams.runtime.settings.load_settings` reads back to equal settings."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in settings.as_dict().items():
        if key == "nodes":
            for node, node_values in value.items():
                tables.append(f"\n[nodes.{_toml_key(node)}]")
                tables.extend(f"{k} = {_toml_value(v)}" for k, v in node_values.items() if v is not None)
        elif isinstance(value, dict):
            tables.append(f"\n[{key}]")
            tables.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
