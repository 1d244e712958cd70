#!/usr/bin/env python3
"""Kubernetes JSON schemas for kubeconform, generated offline from an OpenAPI v2 swagger.json.

    infra/k8s-schemas.py SWAGGER_JSON OUT_DIR [CRD_YAML ...]

Writes OUT_DIR/<kind>-<version>.json (core group) or <kind>-<group>-<version>.json (first label
of the group), the names kubeconform's `-schema-location` template
`{{ .ResourceKind }}{{ .KindSuffix }}.json` looks up, in the "standalone strict" form of
openapi2jsonschema: every `$ref` inlined, and every object with declared properties closed
(`additionalProperties: false`), so a misspelt or misplaced field is an error. As there:
Quantity accepts a string or a number, int-or-string a string or an integer, and optional
fields may be null (Helm renders an empty value as null).

Each CRD_YAML (a CustomResourceDefinition, e.g. prometheus-operator's ServiceMonitor) adds the
schema of each served version, closed the same way.
"""
import json
import os
import sys

def walk(schema, f):
    """`f` applied to every sub-schema of `schema` (not to maps of property names), bottom up."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: walk(v, f) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = walk(out[key], f)
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(out.get(key), list):
            out[key] = [walk(s, f) for s in out[key]]
    return f(out)


def close(schema):
    """Closes an object with properties; its optional fields may be null."""
    if "properties" in schema and "additionalProperties" not in schema and not schema.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        schema["additionalProperties"] = False
    if "properties" in schema:
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            if name not in required and isinstance(prop.get("type"), str):
                prop["type"] = [prop["type"], "null"]
    return schema


def closed(schema):
    return walk(schema, close)


def swagger_schemas(path):
    definitions = json.load(open(path))["definitions"]
    quantity = "io.k8s.apimachinery.pkg.api.resource.Quantity"
    definitions[quantity] = {"oneOf": [{"type": "string"}, {"type": "number"}]}

    def resolve(schema, stack):
        """Inlines every $ref (a recursive type, JSONSchemaProps, is left open where it recurs)."""
        if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name in stack:
                return {}
            return resolve(definitions[name], stack | {name})
        if isinstance(schema, dict) and schema.get("format") == "int-or-string":
            return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        if not isinstance(schema, dict):
            return schema
        out = {k: v for k, v in schema.items() if k != "x-kubernetes-group-version-kind"}
        if isinstance(out.get("properties"), dict):
            out["properties"] = {k: resolve(v, stack) for k, v in out["properties"].items()}
        for key in ("items", "additionalProperties", "not"):
            if isinstance(out.get(key), dict):
                out[key] = resolve(out[key], stack)
        for key in ("allOf", "anyOf", "oneOf"):
            if isinstance(out.get(key), list):
                out[key] = [resolve(s, stack) for s in out[key]]
        return out

    for name, d in definitions.items():
        gvks = d.get("x-kubernetes-group-version-kind") or []
        if len(gvks) != 1:
            continue
        gvk = gvks[0]
        schema = closed(resolve(d, frozenset([name])))
        schema["$schema"] = "http://json-schema.org/schema#"
        yield gvk["group"], gvk["version"], gvk["kind"], schema


def crd_schemas(path):
    import yaml  # PyYAML: only for CRDs

    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for v in spec["versions"]:
            schema = closed(v["schema"]["openAPIV3Schema"])
            schema["$schema"] = "http://json-schema.org/schema#"
            yield spec["group"], v["name"], spec["names"]["kind"], schema


def file_name(group, version, kind):
    if group:
        return f"{kind.lower()}-{group.split('.')[0].lower()}-{version.lower()}.json"
    return f"{kind.lower()}-{version.lower()}.json"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    swagger, out_dir, crds = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    n = 0
    sources = [swagger_schemas(swagger)] + [crd_schemas(c) for c in crds]
    for source in sources:
        for group, version, kind, schema in source:
            with open(os.path.join(out_dir, file_name(group, version, kind)), "w") as f:
                json.dump(schema, f)
            n += 1
    print(f"{n} schemas in {out_dir}")


if __name__ == "__main__":
    main()
