"""JSON schemas of the app store API, registered with the admin API's schemas so one OpenAPI
document describes both and the same validator checks request bodies."""

from __future__ import annotations

from typing import Any

from appstore import artifact, model

from ..admin.schemas import REQUESTS, RESOURCES, TIMESTAMP, obj, ref

STRING = {"type": "string"}
NULLABLE_STRING = {"type": "string", "nullable": True}
STRINGS = {"type": "array", "items": STRING}
FILE_NAME = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"[A-Za-z0-9_][A-Za-z0-9._-]*",
             "x-pattern-words": "must be letters, digits, '.', '_' and '-', not starting with '.' or '-'"}
VALUE = {"description": "A string, integer or boolean, as the parameter's type asks.", "nullable": True}

COMPOSE_FILE = obj({"name": FILE_NAME, "content": {"type": "string", "maxLength": artifact.MAX_COMPOSE_BYTES}},
                   ("name", "content"))
PARAMETER = {"type": "object", "additionalProperties": True, "required": ["name", "type"],
             "properties": {"name": STRING, "type": {"type": "string", "enum": [t.value for t in model.ParamType]},
                            "label": STRING, "description": STRING, "required": {"type": "boolean"},
                            "group": STRING, "default": VALUE},
             "description": "A typed parameter (appstore.model.Parameter): also pattern, min, max, options, "
                            "length, alphabet."}

_SUMMARY = {
    "repository": STRING, "tenant": NULLABLE_STRING, "key": STRING, "title": STRING, "summary": STRING,
    "categories": STRINGS, "public": {"type": "boolean"}, "latest_version": STRING, "latest_tag": STRING,
    "version_count": {"type": "integer", "minimum": 1}, "deprecated": {"type": "boolean",
                                                                       "description": "Every version is deprecated."},
    "icon": {**NULLABLE_STRING, "description": "Path of the latest version's icon."},
}
_APP_FIELDS = {"description": {"type": "string", "description": "Markdown."},
               "maintainers": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
               "website": STRING}
_VERSION_SUMMARY = {"version": STRING, "tag": STRING, "digest": STRING, "tags": STRINGS,
                    "deprecated": {"type": "boolean"}, "prerelease": {"type": "boolean"},
                    "published_at": TIMESTAMP}
_VERSION = {"repository": STRING, "tenant": NULLABLE_STRING, "tag": STRING, "digest": STRING,
            "deprecated": {"type": "boolean"}, "public": {"type": "boolean"},
            "has_metadata": {"type": "boolean", "description": "False for a plain `docker compose publish` "
                                                              "artifact, indexed with defaults."},
            "icon": NULLABLE_STRING, "key": STRING, "title": STRING, "categories": STRINGS, **_APP_FIELDS,
            "version": STRING, "release_notes": STRING, "parameters": {"type": "array", "items": PARAMETER},
            "compose_files": {"type": "array", "items": COMPOSE_FILE},
            "compose_environment": {**STRINGS, "description": "Variables `docker compose -f oci://...` needs "
                                    "from the environment: the other parameters have their defaults written "
                                    "into the published compose files."}}
_IMAGE = obj({"image": STRING, "services": STRINGS,
              "in_daohub": {"type": "boolean", "description": "The reference names this DaoHub."},
              "exists": {"type": "boolean", "nullable": True,
                         "description": "Told only when you may pull the repository, else null."},
              "pullable": {"type": "boolean", "nullable": True, "description": "null outside DaoHub."}},
             ("image", "services", "in_daohub", "exists", "pullable"))

APPSTORE_REQUESTS: dict[str, dict[str, Any]] = {
    "AppPublish": obj({
        "compose_files": {"type": "array", "minItems": 1, "maxItems": artifact.MAX_COMPOSE_FILES,
                          "items": COMPOSE_FILE},
        "metadata": {"type": "object", "additionalProperties": True,
                     "description": "The metadata document (appstore.model.dump_metadata): schemaVersion, app, "
                                    "version; `version.composeFiles` names the compose files in order."},
        "icon": obj({"name": FILE_NAME, "data": {"type": "string", "maxLength": artifact.MAX_ICON_BYTES * 4 // 3 + 4,
                                                 "description": "The file, base64."}}, ("name", "data")),
    }, ("compose_files", "metadata")),
    "AppRender": obj({"values": {"type": "object", "additionalProperties": VALUE}}, ("values",),
                     example={"values": {"HTTP_PORT": 8080}}),
    "AppVersionUpdate": obj({"deprecated": {"type": "boolean"}}, ("deprecated",), example={"deprecated": True}),
}
APPSTORE_RESOURCES: dict[str, dict[str, Any]] = {
    "AppSummary": obj(_SUMMARY, tuple(_SUMMARY)),
    "App": obj({**_SUMMARY, **_APP_FIELDS, "versions": {"type": "array", "items": obj(_VERSION_SUMMARY,
                                                                                      tuple(_VERSION_SUMMARY))}},
               (*_SUMMARY, *_APP_FIELDS, "versions")),
    "AppVersion": obj(_VERSION, tuple(_VERSION)),
    "AppRendered": obj({"repository": STRING, "tag": STRING, "compose": {"type": "string",
                                                                         "description": "The compose file."},
                        "images": {"type": "array", "items": _IMAGE}},
                       ("repository", "tag", "compose", "images")),
    "AppCategories": obj({"items": {"type": "array", "items": obj({"name": STRING, "apps": {
        "type": "integer", "minimum": 1, "description": "Apps in the category that you may see."}}, ("name", "apps"))}},
        ("items",)),
    "PortainerTemplates": {"type": "object", "required": ["version", "templates"], "additionalProperties": True,
                           "properties": {"version": STRING, "templates": {"type": "array",
                                                                           "items": {"type": "object"}}}},
}
REQUESTS.update(APPSTORE_REQUESTS)
RESOURCES.update(APPSTORE_RESOURCES)

__all__ = ["APPSTORE_REQUESTS", "APPSTORE_RESOURCES", "ref"]
