"""Submit a catalogue analysis to running party services and print its progress and result.

Start the three example services first (see services/README.md):

    smpc certs init --parties bank_a,bank_b,bank_c --out services/certs
    for b in bank_a bank_b bank_c; do smpc party serve --config services/$b.toml & done
    .venv/bin/python examples/submit_job.py              # as bank_a, via bank_b

Any compute party accepts the job; every party checks it against its own policy before any
share moves, then all three run it. The second job asks for a column bank_c's policy does not
allow, and is refused with a PolicyError that names bank_c and the rule.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smpc import PolicyError
from smpc.service.client import JobClient
from smpc.service.states import STATE_NAMES

SERVICES = Path(__file__).resolve().parents[1] / "services"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", default="127.0.0.1:50052", help="any party's address (default: bank_b's)")
    parser.add_argument("--as", dest="identity", default="bank_a", help="whose certificate to use")
    parser.add_argument("--certs", type=Path, default=SERVICES / "certs")
    args = parser.parse_args()
    certs = args.certs
    client = JobClient(args.to, ca=certs / "ca.pem", cert=certs / f"{args.identity}.pem",
                       key=certs / f"{args.identity}.key")
    with client:
        print(f"{args.to} is {client.health()}; submitting as {args.identity}")
        params = {"label": "creditability", "positive": "bad", "amount": "credit_amount"}

        def progress(event):
            print(f"  [{event.party}] {STATE_NAMES[event.state]:<9} {event.progress:6.1%}  {event.stage}")

        # results are opened only to the recipients' own parties: name the party asked as one,
        # so that it can hand the result out (a bank asking its own party need not)
        result = client.run("default_rate_overall", params, on_event=progress, recipients=[client.info().party])
        for key, value in result.items():
            print(f"  {key:<14} {value}")

        try:
            client.submit("default_rate_overall", {**params, "amount": "age_in_years"})
        except PolicyError as exc:
            print(f"refused as expected: {exc}")


if __name__ == "__main__":
    main()
