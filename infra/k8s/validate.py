"""Offline validation of the manifests (``platsync k8s validate``; tests/unit/test_k8s_manifests.py).

Three layers, each able to reject a manifest:

1. core resources (Namespace, ConfigMap, Secret, Deployment, CronJob, Service, PVC, NetworkPolicy) against
   the official OpenAPI schemas of the pinned Kubernetes version, as bundled by PyPI
   ``kubernetes-validate`` (its strict variant: unknown fields are errors; validators cached per kind);
2. Strimzi resources against the schemas in ``infra/k8s/crds/`` (copied or subset from Strimzi's
   CRD ``openAPIV3Schema``, SOURCES.md says which), with unknown fields rejected the way the API
   server prunes-and-rejects for structural schemas (``additionalProperties: false`` wherever a
   schema lists ``properties`` and does not preserve unknown fields), plus the object metadata;
3. this project's rules: every container (of a Deployment or a CronJob) has an image, CPU and memory
   requests and limits, and (a Deployment's: PLAT Sync's own and the registry's) liveness and readiness
   probes; every Strimzi resource that belongs to a cluster names it (``strimzi.io/cluster``); label
   values are valid (at most 63 characters: a topology's long node ids make long names).
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CRD_DIR = Path(__file__).resolve().parent / "crds"
BASE_URI = "https://platsync.invalid/crds/"
STRIMZI_GROUP = "kafka.strimzi.io/"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_CLUSTER_BOUND = ("KafkaNodePool", "KafkaTopic", "KafkaUser", "KafkaConnector")


def structural(schema: Any) -> Any:
    """A copy of ``schema`` where objects with listed properties reject unknown ones."""
    if isinstance(schema, list):
        return [structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: structural(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@cache
def _crd_validators() -> dict[tuple[str, str], Draft202012Validator]:
    resources: list[tuple[str, Resource]] = []
    roots: list[tuple[str, str, str]] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        uri = BASE_URI + path.name
        if "openAPIV3Schema" in data:
            schema = {"$id": uri, **structural(copy.deepcopy(data["openAPIV3Schema"]))}
            roots.append((data["apiVersion"], data["kind"], uri))
        else:
            schema = {"$id": uri, **structural(data)}
        resources.append((uri, Resource.from_contents(schema, default_specification=DRAFT202012)))
    registry: Registry = Registry().with_resources(resources)
    return {(api, kind): Draft202012Validator(registry.contents(uri), registry=registry) for api, kind, uri in roots}


def _metadata_errors(doc: dict[str, Any]) -> list[str]:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return ["metadata: missing"]
    errors = []
    name = meta.get("name")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        errors.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
    allowed = {"name", "namespace", "labels", "annotations"}
    errors += [f"metadata.{k}: unknown field" for k in meta if k not in allowed]
    for key in ("labels", "annotations"):
        values = meta.get(key, {})
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            errors.append(f"metadata.{key}: values must be strings")
    return errors


def _crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = _crd_validators().get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if validator is None:
        return [f"no schema for {doc.get('apiVersion')} {doc.get('kind')} in {CRD_DIR}"]
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
              for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]
    errors += _metadata_errors(doc)
    if doc.get("kind") in _CLUSTER_BOUND and "strimzi.io/cluster" not in doc.get("metadata", {}).get("labels", {}):
        errors.append("metadata.labels: strimzi.io/cluster is required (the cluster the resource belongs to)")
    return errors


@cache
def _definitions(schema_dir: str) -> Resource:
    return Resource.from_contents(schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", schema_dir))


@cache
def _core_validator(k8s_version: str, api_version: str, kind: str) -> Draft202012Validator | None:
    """The strict schema of one kind, as ``kubernetes_validate.validate(..., strict=True)`` builds it
    (the same bundled files), kept per kind: that function re-reads its definitions on every call."""
    wanted = major_minor(k8s_version)
    versions = [v for v in all_versions() if major_minor(v) <= wanted]
    if not versions:
        raise ValueError(f"kubernetes-validate bundles no schemas for Kubernetes {k8s_version}")
    schema_dir = f"v{versions[-1]}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        name = f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group_version}.json"
        schema = schema_contents(name, k8s_version)
    except FileNotFoundError:
        return None
    registry: Registry = Resource.from_contents(schema) @ (_definitions(schema_dir) @ Registry())
    return Draft202012Validator(schema, registry=registry)


def _core_errors(doc: dict[str, Any], k8s_version: str) -> list[str]:
    validator = _core_validator(k8s_version, str(doc["apiVersion"]), str(doc["kind"]))
    if validator is None:
        return [f"no Kubernetes {k8s_version} schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def _pod_template(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(path, pod template) of a Deployment or a CronJob; an empty template for other kinds."""
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    if doc.get("kind") == "CronJob":
        return "spec.jobTemplate.spec.template", spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
    return "spec.template", spec.get("template", {})


def _policy_errors(doc: dict[str, Any]) -> list[str]:
    if doc.get("kind") not in ("Deployment", "CronJob"):
        return []
    errors = []
    path, template = _pod_template(doc)
    containers = template.get("spec", {}).get("containers", [])
    for i, c in enumerate(containers):
        where = f"{path}.spec.containers[{i}] ({c.get('name')})"
        if not c.get("image"):
            errors.append(f"{where}: no image")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in res.get(part, {})]
            if missing:
                errors.append(f"{where}: resources.{part} lacks {', '.join(missing)}")
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in c and doc["kind"] == "Deployment":  # a job's pod runs to completion: no probes
                errors.append(f"{where}: no {probe}")
    return errors


def _label_errors(doc: dict[str, Any]) -> list[str]:
    """Label values the API server refuses (the schemas do not check them): over 63 characters or
    not alphanumeric at both ends (long node ids in a topology's names)."""
    path, template = _pod_template(doc)
    found = [("metadata.labels", doc.get("metadata", {}).get("labels", {})),
             (f"{path}.metadata.labels", template.get("metadata", {}).get("labels", {}))]
    return [f"{where}.{key}: value {value!r} is not a label value (at most 63 characters, [A-Za-z0-9._-], "
            "alphanumeric at both ends)"
            for where, labels in found if isinstance(labels, dict) for key, value in labels.items()
            if isinstance(value, str) and value and not _LABEL_VALUE.match(value)]


def validate_document(doc: Any, k8s_version: str) -> list[str]:
    """Every error of one manifest document (empty: valid)."""
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return ["not a Kubernetes resource (apiVersion and kind required)"]
    if str(doc["apiVersion"]).startswith(STRIMZI_GROUP):
        return _crd_errors(doc) + _label_errors(doc)
    return _core_errors(doc, k8s_version) + _policy_errors(doc) + _label_errors(doc)


def validate_text(text: str, k8s_version: str) -> list[str]:
    """Errors of every document of a YAML text, prefixed ``<kind>/<name>``."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d is not None]
    except yaml.YAMLError as exc:
        return [f"not YAML: {exc}"]
    out = []
    for doc in docs:
        label = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}" if isinstance(doc, dict) else "?"
        out += [f"{label}: {e}" for e in validate_document(doc, k8s_version)]
    return out


def validate_dir(directory: Path, k8s_version: str) -> dict[str, list[str]]:
    """``{file path relative to directory: errors}`` for every ``*.yaml`` under ``directory``, the
    per-node directories of a topology's rendering included (only files with errors)."""
    result = {}
    for path in sorted(directory.rglob("*.yaml")):
        errors = validate_text(path.read_text(encoding="utf-8"), k8s_version)
        if errors:
            result[path.relative_to(directory).as_posix()] = errors
    return result
