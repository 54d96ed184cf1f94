"""Methods: reusable techniques that studies compose, one module per family.

A method takes data (counts, scores, activations) or an LM and returns numbers or fitted
objects; it never prints and never writes files. Import the family you need, e.g.
`from assay.methods import stats` or `from assay.methods.stats import wilson`. Nothing is
imported here, so loading one family never pulls in another's dependencies.
"""

__all__: list[str] = []
