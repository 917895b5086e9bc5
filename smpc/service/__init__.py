"""The deployable party service (``smpc party serve``): server, configuration, policy,
audit log, development PKI, and a job client.

Modules: ``config`` (the TOML schema), ``policy`` (a party's decision on a job), ``audit``
(the hash-chained log), ``pki`` (``smpc certs init``), ``jobs`` (two-phase agreement and
execution), ``states`` (a job's states by name), ``server`` (the gRPC servicers and
process), ``client`` (``smpc job ...``).
Example configurations for three banks live in the repository's ``services/`` folder.
Importing this package imports nothing heavy; ``jobs``, ``server`` and ``client`` import grpc.
"""
