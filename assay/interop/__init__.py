"""assay's models inside other evaluation tools, without a server.

- `assay.interop.lmeval`: an lm-evaluation-harness model, ``--model assay`` (entry point
  ``lm_eval.models``; ``assay-lm-eval`` runs lm-eval's command line with it registered, for
  lm-eval releases that do not read that entry point yet);
- `assay.interop.inspect_provider`: an Inspect model provider, ``--model assay/SPEC``
  (entry point ``inspect_ai``); world evaluations become Inspect tasks through
  ``assay export inspect`` (`assay.export`).

Both load the optional package they plug into on import; nothing else in assay imports them.
"""
