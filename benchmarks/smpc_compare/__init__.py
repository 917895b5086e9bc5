"""Side-by-side benchmark of smpc against CrypTen 0.4.1, run from a source checkout.

Not an installed package: ``smpc bench`` (``smpc/bench_cli.py``, which starts this harness in a
new interpreter) or ``python benchmarks/smpc_compare`` puts ``benchmarks/`` first on ``sys.path`` and imports it as
``smpc_compare`` (a name nothing else installs: CrypTen's wheel brings its own top-level
``benchmarks``, which shadows a ``benchmarks.compare``). CrypTen is imported only through ``crypten_compat``.

Modules: ``workload`` (data, ops, references), ``harness`` (processes, alternation, medians),
``workers`` (the party processes), ``grpc_parties`` (smpc over gRPC without the job manager),
``relay`` (the WAN delay relay), ``report`` (markdown, JSON, PNG), ``cli``.
"""
