"""deploy/: the Docker Compose file for three single-host parties, their configurations, the
secrets script and the image's Dockerfile and lock.

There is no Docker daemon on the machines this suite runs on, so the containers are not
started. Instead each container's file system is rebuilt from compose.yaml's mounts (the
secrets from ``deploy/setup-secrets.sh``, the configuration and the data), every party's
configuration is loaded and checked from there as the container would, and the three parties
are then started as real ``smpc party serve`` processes on those trees, with only their
network addresses moved from the compose network to loopback ports, and run a job. Where a
``docker compose`` plugin exists, the file is also checked by Docker itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from service_harness import LOAN_PARAMS, free_ports, wait_for

from smpc import analyses
from smpc.service.config import check_tls_files, load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BANKS = ["bank_a", "bank_b", "bank_c"]
IN_CONTAINER = "/etc/smpc"
STATE = "/var/lib/smpc"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _mounts(service: dict, secrets: dict) -> list[tuple[Path, str, bool]]:
    """(host source, container target, read-only) of a service's volumes and secrets, the
    sources relative to deploy/ as compose resolves them."""
    out = []
    for volume in service["volumes"]:
        source, target, *mode = volume.split(":")
        out.append(((DEPLOY / source).resolve(), target, mode == ["ro"]))
    for secret in service["secrets"]:
        out.append(((DEPLOY / secrets[secret["source"]]["file"]).resolve(), secret["target"], True))
    return out


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """deploy/ and the banks' data copied to a temporary tree, the secrets made there by the
    script, and one rebuilt container root per bank: {bank: root}."""
    tree = tmp_path_factory.mktemp("deploy")
    shutil.copytree(DEPLOY, tree / "deploy", ignore=shutil.ignore_patterns("certs", "state"))
    shutil.copytree(ROOT / "services" / "data", tree / "services" / "data")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    subprocess.run(["sh", str(tree / "deploy" / "setup-secrets.sh")], check=True, capture_output=True, env=env,
                   timeout=120)
    compose = _compose()
    roots = {}
    for bank in BANKS:
        root = tree / "containers" / bank
        for source, target, _ in _mounts(compose["services"][bank], compose["secrets"]):
            copied = tree / source.relative_to(ROOT)
            dest = root / target.lstrip("/")
            if copied.is_dir():
                shutil.copytree(copied, dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(copied, dest)  # keeps the 0600 the service insists on
        roots[bank] = root
    return roots


def test_every_party_mounts_its_configuration_data_state_and_only_its_own_keys():
    compose = _compose()
    assert sorted(compose["services"]) == BANKS
    published = []
    for bank in BANKS:
        service = compose["services"][bank]
        assert service["command"] == ["party", "serve", "--config", f"{IN_CONTAINER}/party.toml"]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        mounts = _mounts(service, compose["secrets"])
        targets = {target: (source, ro) for source, target, ro in mounts}
        assert targets[f"{IN_CONTAINER}/party.toml"] == (DEPLOY / f"{bank}.toml", True)
        assert targets[f"{IN_CONTAINER}/data/loans.csv"] == ((ROOT / "services/data" / f"{bank}_loans.csv"), True)
        assert not targets[STATE][1], "the state volume must be writable"
        for source, target, ro in mounts:
            assert target == STATE or ro, f"{bank}: {target} is mounted writable"
            if source.suffix in (".key", ".store_key") or source.name == "join_salt":
                assert source.name in (f"{bank}.key", f"{bank}.store_key", "join_salt"), (bank, source)
            assert source.parent.name != "ca", f"{bank} mounts a file of the CA's own folder"
            if source.suffix in (".toml", ".csv"):
                assert source.exists(), source
        published += [p.split(":")[1] for p in service["ports"]]
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), "a party is published beyond loopback"
    assert len(set(published)) == len(BANKS)


def test_the_containers_configurations_load_with_their_mounted_files(deployed):
    """Each party's configuration, read from its rebuilt container root: every TLS file, key
    mode, the join salt, the store key and the data file's declared columns as the service
    checks them at start (its own state folder aside, which the volume provides)."""
    for bank, root in deployed.items():
        config = load_config(root / IN_CONTAINER.lstrip("/") / "party.toml", check_files=True)
        check_tls_files(config)
        assert config.name == bank and list(config.ranks) == BANKS
        assert config.join_salt and config.store_key and config.tls_crl is not None
        for peer, spec in config.peers.items():
            assert spec.address == f"{peer}:50051", (bank, peer, spec.address)
        assert str(config.audit_path).startswith(STATE)
        own_keys = sorted(p.name for p in (root / "etc/smpc/certs").iterdir() if p.suffix in (".key", ".store_key"))
        assert own_keys == [f"{bank}.key", f"{bank}.store_key"]


def _on_loopback(root: Path, ports: dict[str, int]) -> Path:
    """The container's configuration with its addresses moved to loopback ports and its state
    folder to the rebuilt root: nothing else changes."""
    text = (root / "etc/smpc/party.toml").read_text()
    bank = re.search(r'^name = "(\w+)"', text, re.M).group(1)
    text = text.replace('listen = "0.0.0.0:50051"', f'listen = "127.0.0.1:{ports[bank]}"')
    for peer, port in ports.items():
        text = text.replace(f'address = "{peer}:50051"', f'address = "127.0.0.1:{port}"')
    text = text.replace(f'"{STATE}/', f'"{root / STATE.lstrip("/")}/')
    (root / STATE.lstrip("/")).mkdir(parents=True, exist_ok=True)
    path = root / "etc/smpc/party-loopback.toml"
    path.write_text(text)
    return path


def test_the_three_containers_configurations_serve_a_job(deployed, tmp_path):
    from smpc.service.client import JobClient

    ports = dict(zip(BANKS, free_ports(len(BANKS)), strict=True))
    procs = {}
    try:
        for bank, root in deployed.items():
            config = _on_loopback(root, ports)
            with open(tmp_path / f"{bank}.log", "w") as log:
                procs[bank] = subprocess.Popen([sys.executable, "-m", "smpc.cli", "party", "serve", "--config",
                                                str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        certs = deployed["bank_a"] / "etc/smpc/certs"

        def client(bank):
            return JobClient(f"127.0.0.1:{ports[bank]}", server_identity=bank, ca=certs / "ca.pem",
                             cert=certs / "bank_a.pem", key=certs / "bank_a.key")

        for bank in BANKS:
            def serving(bank=bank):
                assert procs[bank].poll() is None, (tmp_path / f"{bank}.log").read_text()
                try:
                    with client(bank) as c:
                        return c.health(timeout=2.0) == "SERVING"
                except Exception:  # noqa: BLE001 - not up yet
                    return False

            wait_for(serving, deadline_s=120, what=f"{bank} to serve")
        with client("bank_a") as c:
            result = c.run("default_rate_overall", LOAN_PARAMS)
        tables = {b: pd.read_csv(ROOT / "services" / "data" / f"{b}_loans.csv") for b in BANKS}
        assert result == analyses.get("default_rate_overall").run_plaintext(tables, **LOAN_PARAMS, min_cell_size=10)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=60)
    for bank, root in deployed.items():
        assert (root / STATE.lstrip("/") / "audit" / f"{bank}.jsonl.seal").exists(), "a clean stop seals the log"


def test_the_image_installs_exactly_the_lock():
    """Every pip install in the Dockerfile takes hashed pins without dependencies (smpc itself
    aside, installed --no-deps), every file it copies exists, and the image's lock pins the
    same releases, with the same hashes, as the lock the suite runs on."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^&\n]*)", dockerfile)
    assert installs
    for args in installs:
        assert "--no-deps" in args, args
        assert "--require-hashes" in args or args.rstrip(" \\").endswith(" ."), args
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"

    def pins(path: Path) -> dict[str, tuple[str, frozenset]]:
        out = {}
        for block in re.split(r"\n(?=[A-Za-z0-9_.-]+==)", path.read_text()):
            m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
            if m:
                out[m.group(1).lower()] = (m.group(2), frozenset(re.findall(r"--hash=(sha256:\w+)", block)))
        return out

    runtime, dev = pins(ROOT / "requirements/runtime.lock"), pins(ROOT / "requirements/dev.lock")
    assert runtime and set(runtime) <= set(dev), sorted(set(runtime) - set(dev))
    for name, (version, hashes) in runtime.items():
        assert dev[name][0] == version, (name, version, dev[name][0])
        assert hashes and hashes <= dev[name][1], name


def test_docker_compose_accepts_the_file_where_docker_has_compose():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker compose plugin on this machine (the file is validated by the tests above)")
    proc = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
                          capture_output=True, text=True, cwd=DEPLOY)
    assert proc.returncode == 0, proc.stderr
