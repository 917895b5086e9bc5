"""Protocols: everything that needs messages between the compute parties.

Each function takes the party's runtime (``smpc.context.Context``) and share types from
``smpc.sharing``, runs the same code on every compute party (SPMD), and states its rounds,
bytes per element and error in its docstring.
"""
