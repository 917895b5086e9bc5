"""``smpc store rekey``: a stopped party's job store sealed again under a new key.

The party must be stopped: the procedure takes the audit log's lock (a running party holds it)
and holds the log to its seal, as a start would. The new key is written beside the old one
(``KEY_FILE.new``), the database is re-sealed in one transaction, then the old key file is
renamed ``KEY_FILE.retired-<UTC time>`` and the new one takes its name, so the configuration
does not change. The retired key still opens backups taken before; keep it as long as those.
An interruption leaves the database under one key or the other, and both key files on disk.
The re-key is audited (``store_rekeyed``, with a short id of each key, never the key) and the
log sealed again.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from smpc.service.audit import AuditLog, fsync_dir
from smpc.service.config import ConfigError, load_config, read_store_key
from smpc.service.identity import load_private_key, sign
from smpc.service.server import own_seal_check
from smpc.service.store import KEY_BYTES, JobStore


def key_id(key: bytes) -> str:
    """A short public name of a store key: which key file belongs to which database."""
    return hashlib.sha256(b"smpc store key id\0" + key).hexdigest()[:16]


def _write_key(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def rekey(config_path: str, new_key_file: str | None = None) -> str:
    """Re-seal the job store of the party configured at ``config_path`` under a new key (read
    from ``new_key_file``, or 32 fresh random bytes). Returns a report for the operator."""
    config = load_config(config_path)
    key_path = Path(config.store_key_path)
    new_key = read_store_key(Path(new_key_file)) if new_key_file else os.urandom(KEY_BYTES)
    if new_key == config.store_key:
        raise ConfigError(f"{new_key_file}: that is the key the job store is sealed under now")
    audit = AuditLog(config.audit_path, config.name, check_seal=own_seal_check(config))
    try:
        staged = key_path.with_name(key_path.name + ".new")
        staged.unlink(missing_ok=True)  # a re-key interrupted before its transaction: that key sealed nothing
        _write_key(staged, new_key)
        fsync_dir(staged.parent)
        store = JobStore(config.store_path, config.store_key, config.name)
        try:
            jobs = store.rekey(new_key)
        finally:
            store.close()
        retired = key_path.with_name(f"{key_path.name}.retired-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        os.replace(key_path, retired)
        os.replace(staged, key_path)
        fsync_dir(key_path.parent)
        audit.record("store_rekeyed", store=str(config.store_path), jobs=jobs, old_key_id=key_id(config.store_key),
                     new_key_id=key_id(new_key), retired_key_file=str(retired))
        private = load_private_key(config.tls_key.read_bytes())
        audit.seal(lambda payload: sign(private, payload), config.tls_cert.read_text())
    finally:
        audit.close()
    return (f"{config.name}: the job store {config.store_path} ({jobs} jobs) is sealed under a new key (id "
            f"{key_id(new_key)}), now in {key_path}; the old key (id {key_id(config.store_key)}) is in {retired}: "
            "keep it as long as backups taken before now, then destroy it")
