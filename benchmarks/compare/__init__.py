"""Side-by-side benchmark of smpc against CrypTen 0.4.1 (issue 5), run from a source checkout.

Not an installed package: ``smpc bench`` (``smpc/bench_cli.py``) or
``python benchmarks/compare`` puts ``benchmarks/`` first on ``sys.path`` and imports it as
``compare``. CrypTen is imported only through ``crypten_compat``.

Modules: ``workload`` (data, ops, references), ``harness`` (processes, alternation, medians),
``workers`` (the party processes), ``grpc_parties`` (smpc over gRPC without the job manager),
``relay`` (the WAN delay relay), ``report`` (markdown, JSON, PNG), ``cli``.
"""
