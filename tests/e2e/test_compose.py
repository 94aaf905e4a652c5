"""docker/: what can be checked without a Docker engine.

The compose file parses; each frontdesk service in it runs a binary the build
makes; every FRONTDESK_* variable it sets is one that binary's config table
declares (--list-env); the image is built with the project's own scripts and
its runtime stage installs the package of every shared library the binaries
load.
"""
import os
import re
import subprocess

import pytest

import yaml

from fdtest import BUILD, SOURCE, binary

DOCKER = os.path.join(SOURCE, "docker")
BINARIES = ["authd", "billingd", "linesd", "routerd", "edged", "frontdesk"]


def compose():
    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        return yaml.safe_load(f)


def dockerfile():
    with open(os.path.join(DOCKER, "Dockerfile")) as f:
        return f.read()


def list_env(name):
    r = subprocess.run([binary(name), "--list-env"], capture_output=True, text=True, check=True)
    return set(r.stdout.split())


def test_compose_services_run_built_binaries_with_declared_variables():
    services = compose()["services"]
    assert {"postgres", "migrate", "authd", "billingd", "linesd", "routerd", "edged"} <= set(services)
    checked = 0
    for name, svc in services.items():
        if svc.get("image", "").split(":")[0] != "frontdesk":
            continue
        prog = svc["command"][0]
        assert prog in BINARIES, f"{name} runs {prog}, which the build does not make"
        assert os.access(binary(prog), os.X_OK), f"{binary(prog)} missing"
        declared = list_env(prog)
        for var in svc.get("environment", {}):
            if var.startswith("FRONTDESK_"):
                assert var in declared, f"{name} sets {var}, which {prog} does not declare"
                checked += 1
    assert checked >= 10


def test_services_depend_on_the_migration_step():
    services = compose()["services"]
    for name in ["authd", "billingd", "linesd", "routerd"]:
        dep = services[name]["depends_on"]["migrate"]["condition"]
        assert dep == "service_completed_successfully", name


def test_image_uses_the_project_scripts_and_ships_the_binaries():
    text = dockerfile()
    assert re.search(r"^FROM debian:12", text, re.M)
    assert "scripts/install-deps.sh" in text and "scripts/build.sh" in text
    for b in BINARIES:
        assert f"/src/build/services/{b}/{b}" in text, b


def test_runtime_stage_installs_every_needed_library():
    runtime = dockerfile().split("FROM debian:12")[-1]
    wanted = set()
    for b in BINARIES:
        out = subprocess.run(["readelf", "-d", binary(b)], capture_output=True, text=True,
                             check=True).stdout
        wanted |= set(re.findall(r"NEEDED.*\[(.+)\]", out))
    if any(re.match(r"lib(asan|ubsan)\.so", s) for s in wanted):
        pytest.skip("sanitizer build: the image is built without sanitizers (the normal build checks it)")
    for soname in sorted(wanted - {"libc.so.6", "libm.so.6", "libgcc_s.so.1"}):
        out = subprocess.run(["dpkg", "-S", soname], capture_output=True, text=True).stdout
        pkgs = {line.split(":")[0] for line in out.splitlines() if not line.split(":")[0].endswith("-dev")}
        assert pkgs, f"no package ships {soname}"
        assert any(re.search(rf"\b{re.escape(p)}\b", runtime) for p in pkgs), \
            f"{soname} comes from {pkgs}; the runtime stage installs none of them"
