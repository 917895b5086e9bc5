"""The ``smpc`` command.

    smpc party serve --config party.toml [--insecure-dev-plaintext]
    smpc certs init --parties bank_a,bank_b,bank_c [--clients analyst] --out DIR [--ca-dir CA_DIR]
    smpc certs revoke --ca-dir CA_DIR --crl DIR/ca.crl (--cert FILE | --serial HEX)
    smpc certs fingerprint FILE
    smpc job submit --to HOST:PORT --ca CA --cert CERT --key KEY ANALYSIS --param k=v ...
    smpc job get|watch|cancel --to ... JOB_ID      smpc job analyses --to ...
    smpc audit verify PATH [--peer-logs A B] [--ca CA]    smpc audit cross-check PATH --peer-logs A B [--ca CA]
    smpc store rekey --config party.toml [--new-key-file FILE]
    smpc budget show --config party.toml [--json]

Each command group is added by one function in ``COMMANDS`` (argparse subcommands), so a new
group (``smpc analyze``, ``smpc bench``) is one more function. Exit codes: 0 success,
1 the job or check failed (an audit log tampered with), 2 bad usage or configuration,
3 refused by a party's policy, 4 an audit check found records nothing vouches for yet.
Nothing here imports grpc; the commands that talk to parties load the service lazily.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from fractions import Fraction

from smpc import analyze as _analyze
from smpc import bench_cli as _bench
from smpc.errors import PolicyError, SmpcError

EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNVERIFIED = 1, 2, 3, 4


# ----- smpc party -------------------------------------------------------------------------
def _party_serve(args) -> int:
    from smpc.service.server import serve_and_exit

    serve_and_exit(args.config, insecure=args.insecure_dev_plaintext)
    return 0  # not reached


def _add_party(sub) -> None:
    party = sub.add_parser("party", help="run this institution's party service")
    psub = party.add_subparsers(dest="party_command", required=True, metavar="COMMAND")
    serve = psub.add_parser("serve", help="serve the peer and job services (runs until SIGTERM/SIGINT)")
    serve.add_argument("--config", required=True, help="the party's TOML configuration")
    serve.add_argument("--insecure-dev-plaintext", action="store_true",
                       help="DEVELOPMENT ONLY: no TLS, identities unauthenticated (prints a warning)")
    serve.set_defaults(func=_party_serve)


# ----- smpc certs -------------------------------------------------------------------------
def _certs_init(args) -> int:
    from smpc.service.pki import init_certs

    parties = [p.strip() for p in args.parties.split(",") if p.strip()]
    clients = [c.strip() for c in (args.clients or "").split(",") if c.strip()]
    paths = init_certs(parties, args.out, clients=clients, days=args.days, force=args.force, ca_dir=args.ca_dir)
    ca_dir = args.ca_dir or f"{args.out}/ca"
    print(f"development CA and certificates for {', '.join(parties + clients)} in {args.out}:")
    for name, path in paths.items():
        role = "party" if name in parties else "client"
        print(f"  {name:<12} {path}" + ("" if name == "ca" else f"  ({role}; key {path.with_suffix('.key')})"))
    print(f"  revocation list {args.out}/ca.crl (empty; [tls] crl names it)")
    print(f"The CA's key is in {ca_dir}/ca.key: keep it off the party machines; `smpc certs revoke --ca-dir {ca_dir}` "
          "uses it.")
    print("For development and tests only; keys are unencrypted (mode 0600).")
    return 0


def _certs_revoke(args) -> int:
    from smpc.service.pki import revoke

    serial = None
    if args.serial is not None:
        try:
            serial = int(args.serial.replace(":", ""), 16)
        except ValueError:
            raise SmpcError(f"--serial {args.serial!r} is not a hexadecimal serial number") from None
    revoked, total = revoke(args.ca_dir, args.crl, cert=args.cert, serial=serial)
    print(f"revoked serial {revoked:x}; {args.crl} now lists {total} certificate(s). Parties whose [tls] crl is "
          "this file refuse it from their next call on; copy it to parties that read another copy.")
    return 0


def _certs_fingerprint(args) -> int:
    from smpc.service.pki import describe

    ident = describe(args.cert)
    print(f"{ident.fingerprint}  {ident.role} {ident.name}  serial {ident.serial:x}")
    return 0


def _add_certs(sub) -> None:
    certs = sub.add_parser("certs", help="development PKI")
    csub = certs.add_subparsers(dest="certs_command", required=True, metavar="COMMAND")
    init = csub.add_parser("init", help="make a development CA and a certificate and key per party")
    init.add_argument("--parties", required=True, help="comma-separated party names, e.g. bank_a,bank_b,bank_c")
    init.add_argument("--clients", default="",
                      help="comma-separated client identities (e.g. analysts): client use only, no host names")
    init.add_argument("--out", required=True, help="output folder")
    init.add_argument("--days", type=int, default=365, help="validity (default 365 days)")
    init.add_argument("--force", action="store_true", help="overwrite an existing PKI in --out")
    init.add_argument("--ca-dir", help="where the CA's key and certificate go (default OUT/ca; no party "
                      "configuration names it)")
    init.set_defaults(func=_certs_init)
    rev = csub.add_parser("revoke", help="add a certificate to the CA's revocation list")
    rev.add_argument("--ca-dir", required=True, help="the CA folder (ca.key, ca.pem)")
    rev.add_argument("--crl", required=True, help="the revocation list to update (PEM; created if missing)")
    which = rev.add_mutually_exclusive_group(required=True)
    which.add_argument("--cert", help="the certificate file to revoke")
    which.add_argument("--serial", help="the serial number to revoke (hexadecimal)")
    rev.set_defaults(func=_certs_revoke)
    fpr = csub.add_parser("fingerprint", help="a certificate's identity and sha256 fingerprint (for "
                          "[peers.NAME] fingerprint)")
    fpr.add_argument("cert")
    fpr.set_defaults(func=_certs_fingerprint)


# ----- smpc job ---------------------------------------------------------------------------
def _client(args):
    from smpc.service.client import JobClient

    if args.insecure_dev_plaintext:
        if not args.as_identity:
            raise SmpcError("--insecure-dev-plaintext needs --as IDENTITY")
        print("WARNING: --insecure-dev-plaintext: no TLS, development only", file=sys.stderr)
        return JobClient(args.to, insecure_identity=args.as_identity)
    missing = [f"--{k}" for k in ("ca", "cert", "key") if not getattr(args, k)]
    if missing:
        raise SmpcError(f"missing {', '.join(missing)} (mutual TLS); or --insecure-dev-plaintext for development")
    return JobClient(args.to, ca=args.ca, cert=args.cert, key=args.key, server_identity=args.server_name)


def _progress_line(event, width: int = 24) -> str:
    from smpc.service.states import STATE_NAMES

    filled = int(round(event.progress * width))
    bar = "#" * filled + "." * (width - filled)
    return f"[{event.party}] {STATE_NAMES[event.state]:<9} [{bar}] {event.progress * 100:5.1f}%  {event.stage}"


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    width = max((len(k) for k in result), default=0)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


def _note_result_elsewhere(args, client, status, result) -> None:
    """Tell the caller when the party asked holds nothing of the result for them (it lives at
    their own party), with the command that fetches it there. Not a failure: the job
    succeeded, and the same empty result is all any other party may hand out."""
    from smpc.service.client import result_elsewhere

    note = result_elsewhere(status, result, client.identity)
    if note is None:
        return
    print(f"note: {note}", file=sys.stderr)
    if client.identity is None or client.identity == status.party:
        return
    if args.insecure_dev_plaintext:
        conn = ["--insecure-dev-plaintext", "--as", args.as_identity]
    else:
        conn = ["--ca", args.ca, "--cert", args.cert, "--key", args.key]
    command = shlex.join(["smpc", "job", "get", "--to", f"ADDRESS_OF_{client.identity}", *conn, status.job_id])
    print(f"  {command}", file=sys.stderr)


def _job_submit(args) -> int:
    with _client(args) as client:
        job_id = client.submit(args.analysis, _analyze.parse_param_args(args.param), source=args.source or "",
                               job_id=args.job_id or "", recipients=args.recipient or [])
        print(f"job {job_id} accepted by every party and running", file=sys.stderr)
        if args.no_wait:
            print(job_id)
            return 0
        quiet = args.quiet

        def show(event):
            if not quiet:
                print(_progress_line(event), file=sys.stderr, flush=True)

        result = client.wait(job_id, on_event=show)
        _print_result(result, args.json)
        _note_result_elsewhere(args, client, client.get(job_id), result)
    return 0


def _job_get(args) -> int:
    from google.protobuf import json_format

    with _client(args) as client:
        status = client.get(args.job_id)
        print(json.dumps(json_format.MessageToDict(status, preserving_proto_field_name=True), indent=2))
        if status.result_json:
            _note_result_elsewhere(args, client, status, json.loads(status.result_json))
    return 0


def _job_watch(args) -> int:
    with _client(args) as client:
        for event in client.events(args.job_id):
            print(_progress_line(event), flush=True)
        result = client.result(args.job_id)
        _print_result(result, args.json)
        _note_result_elsewhere(args, client, client.get(args.job_id), result)
    return 0


def _job_cancel(args) -> int:
    from smpc.service.states import STATE_NAMES

    with _client(args) as client:
        status = client.cancel(args.job_id)
        print(f"job {args.job_id}: {STATE_NAMES[status.state]} at {status.party}")
    return 0


def _job_analyses(args) -> int:
    with _client(args) as client:
        for a in client.analyses().analyses:
            print(f"{a.name}{'' if a.allowed else '  (not allowed by this party)'}: {a.summary}")
            for p in a.params:
                req = "required" if p.required else f"default {p.default or 'none'}"
                print(f"    {p.name} ({p.type}, {req}): {p.description}")
            print(f"    Leakage: {a.leakage}")
            print(f"    Cost: {a.cost}")
    return 0


def _connection_args(p) -> None:
    p.add_argument("--to", required=True, metavar="HOST:PORT", help="any compute party's address")
    p.add_argument("--ca", help="the consortium CA certificate (PEM)")
    p.add_argument("--cert", help="your certificate (PEM); its identity is the requester")
    p.add_argument("--key", help="your private key (PEM)")
    p.add_argument("--server-name", help="pin the party's certificate identity (e.g. bank_a)")
    p.add_argument("--insecure-dev-plaintext", action="store_true", help="DEVELOPMENT ONLY: no TLS")
    p.add_argument("--as", dest="as_identity", help="with --insecure-dev-plaintext: the identity to claim")


def _add_job(sub) -> None:
    job = sub.add_parser("job", help="submit and follow jobs on the party services")
    jsub = job.add_subparsers(dest="job_command", required=True, metavar="COMMAND")
    submit = jsub.add_parser("submit", help="submit a catalogue analysis to any party and wait for the result")
    _connection_args(submit)
    submit.add_argument("analysis", help="a catalogue analysis, e.g. default_rate_overall")
    submit.add_argument("--param", action="append", metavar="KEY=VALUE", help="an analysis parameter (repeatable)")
    submit.add_argument("--source", help="the [data.NAME] source every party reads (default: the first [data.*] "
                        "source in the configuration of the party in --to)")
    submit.add_argument("--job-id", help="your id for the job, unique among your jobs (default: a random one); "
                        "the job's id is YOUR_IDENTITY/ID")
    submit.add_argument("--recipient", action="append", help="another identity that may fetch the result")
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return")
    submit.add_argument("--json", action="store_true", help="print the result as JSON")
    submit.add_argument("--quiet", action="store_true", help="no progress lines")
    submit.set_defaults(func=_job_submit)
    for name, func, help_text in (
        ("get", _job_get, "a job's status (and result, if you may see it) as JSON"),
        ("watch", _job_watch, "follow a job's events, then print its result"),
        ("cancel", _job_cancel, "cancel a job on every party"),
    ):
        p = jsub.add_parser(name, help=help_text)
        _connection_args(p)
        p.add_argument("job_id", help="REQUESTER/ID as submit printed it (a bare ID: one of your own jobs)")
        if name == "watch":
            p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
    lst = jsub.add_parser("analyses", help="the analysis catalogue as a party serves it")
    _connection_args(lst)
    lst.set_defaults(func=_job_analyses)


# ----- smpc audit -------------------------------------------------------------------------
def _audit_authority(args):
    """(CA certificate, revocation list) from --ca/--crl, or (None, None)."""
    if not args.ca:
        if args.crl:
            raise SmpcError("--crl needs --ca (the CA that signed the revocation list)")
        return None, None
    from pathlib import Path

    from smpc.service.identity import RevocationList, load_certificate

    ca = load_certificate(Path(args.ca).read_bytes())
    return ca, RevocationList(Path(args.crl), ca) if args.crl else None


def _audit_verify(args) -> int:
    from smpc.service.audit import hold_to_seal, read_lines, read_seal, verify_lines

    lines = read_lines(args.path)
    result = verify_lines(lines)
    print(f"{args.path}: {result}")
    if not result.ok:
        return EXIT_FAILED
    seal = read_seal(args.path)
    if seal is not None:
        ca, crl = _audit_authority(args)
        first = json.loads(lines[0]) if lines else {}
        finding = hold_to_seal(first.get("party", seal.party), lines, seal, ca, crl)
        if finding is not None:
            print(f"TAMPERED: {finding.party}: {finding.kind}: {finding.text}")
            return EXIT_FAILED
        print(f"sealed: the log ends at the head its party signed at its clean stop ({seal.time})")
    if args.peer_logs:
        return _audit_cross_check(args)
    return 0


def _audit_cross_check(args) -> int:
    from smpc.service.audit import cross_check

    ca, crl = _audit_authority(args)
    check = cross_check([args.path, *args.peer_logs], ca, crl)
    print(check.report())
    return EXIT_FAILED if not check.ok else 0 if check.complete else EXIT_UNVERIFIED


def _add_audit(sub) -> None:
    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = asub.add_parser("verify", help="check the hash chain; report the first edited, inserted or deleted record")
    verify.add_argument("path")
    verify.add_argument("--peer-logs", nargs="+", default=[], metavar="LOG",
                        help="the other parties' logs: also cross-check (see `smpc audit cross-check`)")
    cross = asub.add_parser("cross-check", help="hold each log against the signed heads the others recorded of it "
                                                "and against its own seal: finds rewritten (hashes recomputed), cut "
                                                "and extended logs; exit 4 when records remain that nothing vouches "
                                                "for yet")
    cross.add_argument("path")
    cross.add_argument("--peer-logs", nargs="+", required=True, metavar="LOG", help="the other parties' logs")
    for command in (verify, cross):
        command.add_argument("--ca", help="the consortium CA certificate: also check that it issued every "
                                          "certificate that signed a head or a seal")
        command.add_argument("--crl", help="the CA's revocation list (with --ca)")
    verify.set_defaults(func=_audit_verify)
    cross.set_defaults(func=_audit_cross_check)


# ----- smpc store -------------------------------------------------------------------------
def _store_rekey(args) -> int:
    from smpc.service.rekey import rekey

    print(rekey(args.config, args.new_key_file))
    return 0


def _add_store(sub) -> None:
    store = sub.add_parser("store", help="the party's job store (jobs and results, sealed)")
    ssub = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    rekey = ssub.add_parser("rekey", help="seal a stopped party's job store under a new key; the old key file is "
                                          "kept beside it, renamed .retired-TIME, for older backups")
    rekey.add_argument("--config", required=True, help="the party's configuration (TOML)")
    rekey.add_argument("--new-key-file", help="the new key (64 hex digits, mode 0600); default: 32 fresh random bytes")
    rekey.set_defaults(func=_store_rekey)


# ----- smpc budget ------------------------------------------------------------------------
def _budget_show(args) -> int:
    from smpc.service.budget import PrivacyBudget
    from smpc.service.config import load_config
    from smpc.service.store import JobStore

    config = load_config(args.config)
    store = JobStore(config.store_path, config.store_key, config.name)
    try:
        budget = PrivacyBudget(config, store, None)
        summary, ledger = budget.summary(), store.ledger()
    finally:
        store.close()
    if args.json:
        print(json.dumps({"party": config.name, "period": config.policy.dp_period, "sources": summary,
                          "ledger": ledger}, indent=2))
        return 0
    print(f"{config.name}: privacy budget per data source, per {config.policy.dp_period} (UTC)"
          + ("; jobs without dp_epsilon refused on budgeted sources" if config.policy.dp_required else ""))
    for row in summary:
        limit = "no budget" if row["budget"] is None else f"budget {row['budget']:g}, remaining {row['remaining']:g}"
        print(f"  {row['source']:<20} {row['period']:<10} spent {row['spent']:g}  ({limit})")
    print(f"ledger ({len(ledger)} debits):")
    for row in ledger:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["debited_at"]))
        refund = f"  refunded: {row['refund_reason']}" if row["refunded_at"] is not None else ""
        print(f"  {when}  {row['job_id']:<40} {row['source']:<16} epsilon {float(Fraction(row['epsilon'])):g}"
              f"{refund}")
    return 0


def _add_budget(sub) -> None:
    budget = sub.add_parser("budget", help="the party's differential privacy ledger")
    bsub = budget.add_subparsers(dest="budget_command", required=True, metavar="COMMAND")
    show = bsub.add_parser("show", help="budget, spent and remaining epsilon per data source, and every debit")
    show.add_argument("--config", required=True, help="the party's configuration (TOML)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_budget_show)


COMMANDS: list[Callable] = [_add_party, _add_certs, _add_job, _add_audit, _add_store, _add_budget,
                            _analyze.add_parser, _bench.add_parser]
"""Functions that each add one command group to the ``smpc`` parser."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smpc", description="secure multi-party computation for bank consortia")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PolicyError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except SmpcError as exc:
        # what the operator fixes on the machine (configuration, a log, the store or its key)
        from_config = type(exc).__name__ in ("ConfigError", "AuditError", "StoreError")
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE if from_config else EXIT_FAILED
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
