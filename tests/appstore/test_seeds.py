"""Every shipped seed loads, passes the publish check and renders, with defaults and custom values."""

from __future__ import annotations

from pathlib import Path

import pytest

import appstore
from appstore import yamlsafe
from appstore.interpolate import interpolate_tree
from appstore.model import ParamType, load_app_folder
from appstore.render import check_template, render

SEEDS = Path(appstore.__file__).parent / "seeds"
KEYS = ["gitea", "nginx", "postgresql", "redis", "voting-app", "wordpress"]


def seed(key):
    return load_app_folder(SEEDS / key)


def parse_back(text: str) -> dict:
    """The output as docker compose reads it: parsed, then interpolated with an empty environment
    (every `$` is escaped, so nothing in the user's shell can leak in)."""
    missing: list[str] = []
    doc = interpolate_tree(yamlsafe.load(text), {}, on_missing=missing.append)
    assert missing == []
    return doc


def test_the_seed_catalog():
    assert sorted(p.name for p in SEEDS.iterdir() if p.is_dir()) == KEYS


@pytest.mark.parametrize("key", KEYS)
def test_seed_loads_and_passes_the_publish_check(key):
    app = seed(key)
    assert app.key == key and app.title and app.description and app.categories
    assert app.icon_data is not None and app.icon_data.media_type == "image/png"
    assert app.versions
    for version in app.versions:
        assert version.parameters, "each seed has real parameters"
        check_template(version)


@pytest.mark.parametrize("key", KEYS)
def test_seed_renders_with_defaults(key):
    app = seed(key)
    for version in app.versions:
        result = render(version)
        doc = parse_back(result.text)
        assert doc["services"]
        for name, service in doc["services"].items():
            assert service.get("image"), name
        assert result.images
        secrets = [p.name for p in version.parameters if p.type is ParamType.SECRET and p.default is None]
        assert sorted(result.generated) == sorted(secrets)


def test_voting_app():
    version = seed("voting-app").version()
    doc = parse_back(render(version, {"VOTE_PORT": 8000, "RESULT_PORT": "8001", "OPTION_A": "Tea",
                                      "OPTION_B": "Coffee", "POSTGRES_VERSION": "16"}).text)
    services = doc["services"]
    assert set(services) == {"vote", "result", "worker", "redis", "db"}
    assert set(doc["networks"]) == {"front-tier", "back-tier"}
    assert services["vote"]["ports"] == ["8000:80"] and services["result"]["ports"] == ["8001:80"]
    assert services["vote"]["environment"] == {"OPTION_A": "Tea", "OPTION_B": "Coffee"}
    assert services["worker"]["networks"] == ["back-tier"] and services["redis"]["networks"] == ["back-tier"]
    assert services["vote"]["networks"] == ["front-tier", "back-tier"]
    assert services["db"]["image"] == "postgres:16-alpine"
    # the container's own variable survives as a variable for its shell
    assert services["db"]["healthcheck"]["test"] == ["CMD-SHELL", "pg_isready -U ${POSTGRES_USER}"]


def test_wordpress_with_aliyun_labels():
    version = seed("wordpress").version()
    result = render(version, {"SCALE": "3", "DOMAIN_PREFIX": "blog", "HTTP_PORT": 8081, "MYSQL_VERSION": "5.7"})
    doc = parse_back(result.text)
    web, db = doc["services"]["web"], doc["services"]["db"]
    assert web["labels"]["aliyun.scale"] == "3"
    assert web["labels"]["aliyun.routing.port_80"] == "http://blog"
    assert web["ports"] == ["8081:80"]
    assert db["image"] == "mysql:5.7"
    assert web["environment"]["WORDPRESS_DB_PASSWORD"] == db["environment"]["MYSQL_PASSWORD"]
    assert len(db["environment"]["MYSQL_ROOT_PASSWORD"]) == 32
    assert [i.normalized for i in result.images] == ["docker.io/library/wordpress:6.5", "docker.io/library/mysql:5.7"]


@pytest.mark.parametrize(("values", "field"), [
    ({"SCALE": 11}, "SCALE"), ({"DOMAIN_PREFIX": "Bad_Prefix"}, "DOMAIN_PREFIX"), ({"HTTP_PORT": 80}, "HTTP_PORT"),
])
def test_wordpress_bad_values(values, field):
    from appstore.errors import ValuesError

    with pytest.raises(ValuesError) as info:
        render(seed("wordpress").version(), values)
    assert list(info.value.errors) == [field]


def test_redis_custom():
    result = render(seed("redis").version(), {"REDIS_PASSWORD": "pa$$word", "PORT": 7000, "BIND_ADDRESS": "0.0.0.0",
                                             "APPENDONLY": "no", "MAXMEMORY_MB": 64, "REDIS_VERSION": "6.2"})
    redis = parse_back(result.text)["services"]["redis"]
    assert redis["image"] == "redis:6.2-alpine"
    assert redis["command"] == ["redis-server", "--requirepass", "pa$$word", "--appendonly", "no",
                                "--maxmemory", "64mb"]
    assert redis["ports"] == ["0.0.0.0:7000:6379"]


def test_postgresql_long_syntax_and_multiline_config():
    result = render(seed("postgresql").version(), {"PORT": 15432, "INIT_SQL": "CREATE TABLE t (x int);\n"})
    doc = parse_back(result.text)
    db = doc["services"]["db"]
    assert db["ports"] == [{"target": 5432, "published": "15432", "protocol": "tcp"}]
    assert db["volumes"][0]["source"] == "pg-data"
    assert doc["configs"]["init-sql"]["content"] == "CREATE TABLE t (x int);\n"
    assert doc["x-daohub"] == {"backup": "pg_dump"}
    assert db["healthcheck"]["test"][1] == "pg_isready -U ${POSTGRES_USER} -d ${POSTGRES_DB}"


def test_nginx_versions_and_bool():
    app = seed("nginx")
    assert [v.version for v in app.versions] == ["1.0.0", "1.1.0"]
    assert app.versions[0].deprecated and app.version().version == "1.1.0"
    doc = parse_back(render(app.version(), {"READ_ONLY": "false", "INDEX_HTML": "<h1>hi</h1>\n"}).text)
    assert doc["services"]["web"]["read_only"] == "false"
    assert doc["configs"]["index"]["content"] == "<h1>hi</h1>\n"


def test_gitea():
    result = render(seed("gitea").version(), {"SSH_PORT": 2022, "ROOT_URL": "https://git.example.org/",
                                             "DISABLE_REGISTRATION": True})
    server = parse_back(result.text)["services"]["server"]
    assert server["ports"] == ["3000:3000", "2022:22"]
    assert server["environment"]["GITEA__server__ROOT_URL"] == "https://git.example.org/"
    assert server["environment"]["GITEA__service__DISABLE_REGISTRATION"] == "true"
    password = result.values["DB_PASSWORD"]
    assert len(password) == 24 and set(password) <= set("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-_")


def _decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGBA rows) of an 8-bit RGBA, non-interlaced PNG with filter 0 rows (what
    scripts/draw_seed_icons.py writes)."""
    import struct
    import zlib

    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert (depth, color, interlace) == (8, 6, 0)
    raw = zlib.decompress(idat)
    stride = 1 + 4 * width
    rows = [raw[i * stride:(i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, [row[1:] for row in rows]


@pytest.mark.parametrize("key", KEYS)
def test_seed_icons_are_drawn_not_plain_squares(key):
    width, height, rows = _decode_png((SEEDS / key / "icon.png").read_bytes())
    assert (width, height) == (128, 128)
    assert rows[0][3] == 0 and rows[-1][-1] == 0  # rounded corners: transparent
    opaque = {bytes(row[i:i + 4]) for row in rows for i in range(0, len(row), 4) if row[i + 3] == 255}
    assert len(opaque) >= 8, "a glyph with anti-aliased edges, not one flat colour"


def test_the_icon_drawing_script_reproduces_the_committed_icons():
    import subprocess
    import sys

    script = Path(appstore.__file__).parents[1] / "scripts" / "draw_seed_icons.py"
    done = subprocess.run([sys.executable, str(script), "--check", "nginx", "voting-app"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
