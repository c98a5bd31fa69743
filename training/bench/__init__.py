"""The evaluation harness's parts: real contexts, simulated users who edit, and a sandbox for pass@1.

- `contexts`: what the model is asked (summaries and emails of real documents, HumanEval functions),
  with deterministic, disjoint train/online splits.
- `users`: simulated users in the PRELUDE protocol (a latent preference per source of contexts; the
  user edits a response until it satisfies the preference), a registry of named settings, drift, and
  `load_user` for users written elsewhere. The preferences live in `writing` and `codestyle`
  (`fstrings` converts `%` and `.format` to f-strings for the latter).
- `sandbox`: runs HumanEval tests on a completion in a separate, limited process.
"""
