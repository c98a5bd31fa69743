"""Capture: from suggestions shown and the user's edits to settled (x, y, y′) triples.

- `cost`: the edit cost between y and y′.
- `bound`: where a suggestion (or the user's text in its place) ends: a line of code, a sentence.
- `tracking`: document text in LSP positions, and spans followed through edits.
- `settle`: when a span is final, whether an edit accepted a suggestion, what an outcome is called.
- `session`: `Capture`, which the language server feeds with editor events.

Nothing here imports pygls or lsprotocol: LSP objects come in as dicts or attribute objects.
"""
