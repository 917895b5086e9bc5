"""Protocols: everything that needs messages between the compute parties.

Each function takes the party's runtime (``smpc.context.Context``) and share types from
``smpc.sharing``, runs the same code on every compute party (SPMD), and states its rounds,
bytes per element and error in its docstring.

- ``arithmetic``: input, reveal, multiply, truncate; ``boolean``: AND, adders, A2B, bit
  injection; ``compare``: comparisons built on them.
- ``rounds``: the round engine (``Mul``, ``And``, ``Table``; ``drive``, ``parallel``) that
  batches the steps of several protocols into one message per peer per round; ``local``:
  the local steps between rounds.
- ``normalise`` (bit lengths and power-of-two factors), ``polynomial``, then ``division``
  (divide, reciprocal, sqrt, rsqrt) and ``functions`` (exp, log, sigmoid) on top of them.
- ``shuffle``, ``sort``, ``segmented``: oblivious permutations and what is built on them.
- ``fused``: kernels that fold a step's AES-CTR masks into its ring arithmetic (C and torch).
"""
