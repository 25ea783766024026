"""Ray: audit workers with resident models, and the pipeline that feeds them targets.

Nothing here knows how an explanation is made (that is `dxray.explain`) or how rows are stored
(that is `dxray.catalog`): it moves targets to workers and rows to the catalog.
"""
