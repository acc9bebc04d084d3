"""deploy/compose: the services, their start order, health checks, and secrets kept in .env."""

from __future__ import annotations

import re

import pytest

from .files import (
    COMPOSE_DIR,
    DEPLOY,
    InterpolationError,
    compose_environment,
    compose_file,
    interpolate,
    interpolate_tree,
    load_deploy_config,
    read_env_file,
    required_variables,
)

SERVICES = {"postgres", "minio", "minio-init", "migrate", "hub", "lb"}
ONE_SHOT = {"minio-init", "migrate"}


@pytest.fixture(scope="module")
def compose():
    return compose_file()


def _depends(service: dict) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()}


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("${A}", {"A": "1"}, "1"),
    ("${A:-d}", {"A": ""}, "d"),
    ("${A-d}", {"A": ""}, ""),
    ("${A-d}", {}, "d"),
    ("x$A/y", {"A": "1"}, "x1/y"),
    ("$$HOME", {"HOME": "/root"}, "$HOME"),
    ("${A:?need A}", {"A": "v"}, "v"),
    ("${A:+alt}", {"A": "v"}, "alt"),
    ("${A:+alt}", {}, ""),
])
def test_interpolation_reads_compose_forms(text, env, expected):
    assert interpolate(text, env) == expected


def test_interpolation_refuses_a_missing_required_variable():
    with pytest.raises(InterpolationError, match="need A"):
        interpolate("${A:?need A}", {"A": ""})


def test_services_and_replicas(compose):
    assert set(compose["services"]) == SERVICES
    assert compose["services"]["hub"]["deploy"]["replicas"] >= 2
    assert compose["services"]["postgres"]["image"].startswith("postgres:15")


def test_start_order(compose):
    services = compose["services"]
    assert _depends(services["migrate"]) == {"postgres": "service_healthy"}
    assert _depends(services["minio-init"]) == {"minio": "service_healthy"}
    assert _depends(services["hub"]) == {
        "postgres": "service_healthy",
        "migrate": "service_completed_successfully",
        "minio-init": "service_completed_successfully",
    }
    assert _depends(services["lb"]) == {"hub": "service_healthy"}
    # Everything a condition waits on for health has a health check to wait for.
    for service in services.values():
        for name, condition in _depends(service).items():
            if condition == "service_healthy":
                assert "healthcheck" in services[name], name


def test_long_running_services_have_health_checks_and_one_shots_do_not_restart(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
        else:
            assert service.get("healthcheck", {}).get("test"), name
            assert service.get("restart") == "unless-stopped", name


def test_hub_health_check_targets_the_port_it_serves(compose):
    hub = compose["services"]["hub"]
    port = hub["command"][hub["command"].index("--addr") + 1].rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}/readyz" in " ".join(hub["healthcheck"]["test"])
    assert hub["expose"] == [port]


def test_stop_grace_covers_the_drain(compose):
    # Request bodies drain for up to shutdown_timeout, then responses for as long again.
    config = load_deploy_config("compose/config.yaml")
    grace = compose["services"]["hub"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace)
    assert int(grace[:-1]) > 2 * config.server.shutdown_timeout


def test_every_required_variable_is_in_env_example_and_only_placeholders_are():
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    example = read_env_file(COMPOSE_DIR / ".env.example")
    missing = required_variables(text) - set(example)
    assert not missing, f"compose.yaml requires {missing}, which .env.example does not list"
    for key, value in example.items():
        assert "CHANGE-ME" in value, f".env.example must hold placeholders only: {key}"
    assert ".env" in (COMPOSE_DIR / ".gitignore").read_text().split()


def test_the_whole_file_interpolates_with_env_example_and_fails_without(compose):
    example = read_env_file(COMPOSE_DIR / ".env.example")
    interpolate_tree(compose, example)
    with pytest.raises(InterpolationError):
        interpolate_tree(compose, {})


def test_secrets_are_never_literal(compose):
    secretish = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|DATABASE_URL")
    for name, service in compose["services"].items():
        for key, value in compose_environment(service).items():
            if secretish.search(key):
                assert "${" in value, f"{name}: {key} must come from .env, not the file"


def test_hub_and_migrate_share_image_config_and_secrets(compose):
    hub, migrate = compose["services"]["hub"], compose["services"]["migrate"]
    assert hub["image"] == migrate["image"]
    assert hub["environment"] == migrate["environment"]
    assert hub["volumes"] == migrate["volumes"]
    assert hub["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (COMPOSE_DIR / hub["build"]["context"]).resolve() == DEPLOY.parent


def test_lb_runs_the_nginx_template_with_its_placeholders_set(compose):
    lb = compose["services"]["lb"]
    template = (DEPLOY / "nginx" / "daohub.conf").read_text()
    placeholders = set(re.findall(r"\$\{(DAOHUB_LB_[A-Z_]+)\}", template))
    assert placeholders == {"DAOHUB_LB_LISTEN", "DAOHUB_LB_BACKEND"}
    env = compose_environment(lb)
    assert placeholders <= set(env)
    # envsubst must leave nginx's own $variables alone.
    assert env["NGINX_ENVSUBST_FILTER"] == "^DAOHUB_LB_"
    assert "../nginx/daohub.conf:/etc/nginx/templates/nginx.conf.template:ro" in lb["volumes"]
    assert env["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    assert lb["command"][lb["command"].index("-c") + 1] == "/etc/nginx/nginx.conf"
    hub_port = compose["services"]["hub"]["expose"][0]
    assert env["DAOHUB_LB_BACKEND"] == f"hub:{hub_port}"
    assert any(port.endswith(f":{env['DAOHUB_LB_LISTEN']}") for port in lb["ports"])


def test_minio_init_creates_the_bucket_the_hub_uses(compose):
    config = load_deploy_config("compose/config.yaml")
    script = compose["services"]["minio-init"]["command"][0]
    params = config.storage_params()
    assert f"mc mb --ignore-existing store/{params.bucket}" in script
    policy = (COMPOSE_DIR / "minio-policy.json").read_text()
    assert f"arn:aws:s3:::{params.bucket}/*" in policy
    assert params.endpoint == "http://minio:9000"
