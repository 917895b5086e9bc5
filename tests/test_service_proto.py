"""The wire contract: generated code matches protos/ (drift), tensors travel as bytes, only
the transport and the service import grpc, and nothing generic lands in site-packages."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

from smpc.v1 import jobs_pb2, peer_pb2

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "smpc" / "v1"
GRPC_ALLOWED = {
    "smpc/transport/grpc.py", "smpc/service/jobs.py", "smpc/service/server.py", "smpc/service/client.py",
    "smpc/service/auth.py", "smpc/service/pool.py",
}


def _load_generator():
    spec = importlib.util.spec_from_file_location("smpc_protos_generate", ROOT / "protos" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_matches_the_protos(tmp_path):
    """Fails when protos/ changed without `make proto` (or the checked-in code was edited)."""
    generate = _load_generator()
    fresh = {p.name: p.read_bytes() for p in generate.generate(tmp_path)}
    checked_in = {p.name: p.read_bytes() for p in GENERATED.iterdir() if p.name.endswith(generate.GENERATED_SUFFIXES)}
    assert sorted(fresh) == sorted(checked_in), "generated files differ: run `make proto`"
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"{stale} differ from protos/: run `make proto`"


def _messages(file_descriptor):
    stack = list(file_descriptor.message_types_by_name.values())
    while stack:
        message = stack.pop()
        yield message
        stack.extend(message.nested_types)


def test_tensor_data_travels_as_bytes_never_repeated_numbers():
    assert peer_pb2.Frame.DESCRIPTOR.fields_by_name["payload"].type == FieldDescriptor.TYPE_BYTES
    not_numbers = {FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE,
               FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_BOOL}
    repeated_numbers = [
        f"{m.full_name}.{f.name}"
        for fd in (peer_pb2.DESCRIPTOR, jobs_pb2.DESCRIPTOR)
        for m in _messages(fd)
        for f in m.fields
        if f.is_repeated and f.type not in not_numbers and not m.GetOptions().map_entry
    ]
    assert repeated_numbers == ["smpc.v1.Frame.shape"]  # tensor metadata (<= 16 dimensions), not data


def test_only_the_transport_and_the_service_import_grpc():
    pattern = re.compile(r"^\s*(import grpc|from grpc)", re.M)
    offenders = []
    for path in (ROOT / "smpc").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("smpc/v1/") or rel in GRPC_ALLOWED:
            continue
        if pattern.search(path.read_text()):
            offenders.append(rel)
    assert offenders == []


def test_importing_the_library_loads_no_grpc_and_no_generic_top_level_module(tmp_path):
    code = (
        "import sys, importlib.util as u\n"
        "import smpc, smpc.analyses, smpc.cli, smpc.service, smpc.service.config, smpc.service.audit,"
        " smpc.service.policy, smpc.service.pki\n"
        "print('grpc' in sys.modules)\n"
        "print([n for n in ('services', 'protos') if u.find_spec(n)])\n"
        "import importlib.metadata as m\n"
        "print((m.distribution('smpc').read_text('top_level.txt') or 'smpc').split())\n"
        "print(smpc.service.__file__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    grpc_loaded, generic, top_level, service_file = out.stdout.splitlines()
    assert grpc_loaded == "False"
    assert generic == "[]"  # services/ holds configs, protos/ the contract: neither is importable
    assert top_level == "['smpc']"  # (CrypTen's wheel installs `examples`, `benchmarks`, `test`; we install none)
    assert Path(service_file).parent.parent.name == "smpc"  # installed as smpc.service


def test_the_smpc_command_is_installed():
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("smpc") == "smpc.cli:main"
