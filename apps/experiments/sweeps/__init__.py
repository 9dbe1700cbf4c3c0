"""Sweeps: pure parsing of sweep dimensions (:mod:`.dimensions`), their expansion into
run configs (:mod:`.expand`) and the ASHA stopping rule (:mod:`.asha`). No Django,
no database: the service ``apps.experiments.services.sweeps`` uses them."""
