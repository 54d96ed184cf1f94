"""The catalogue of studies: one module per published claim, nothing else.

Each module ``assay/studies/<name>.py`` holds the claim (its docstring), a `StudyConfig`
subclass, its declared decision rules and ``run(cfg, ctx) -> Result`` registered with
`assay.study.study`; `assay.study.discover` imports them all. Modules whose names start with
an underscore hold helpers shared by several studies.
"""
