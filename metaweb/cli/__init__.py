"""The ``metaweb`` command line (``[project.scripts]`` in pyproject.toml).

    metaweb login --url URL            # the token from --token, stdin or a prompt
    metaweb runs launch --taskset NAME --config run.json [--follow]
    metaweb runs ls [--query Q] | show ID | cancel ID | metrics ID [--csv] | follow ID
    metaweb sweeps launch --taskset NAME --dim seed=0,1,2 --dim inner_lr=0.01,0.1 [--config run.json]
    metaweb sweeps ls | show ID | stop ID
    metaweb models ls | pull NAME@production -o model.safetensors | push FILE --config run.json
    metaweb adapt MODEL --support support.csv --query query.csv [--follow]

Tables for people, ``--json`` for machines. Errors are one line on stderr and a
non-zero exit: 1 for an error, 64 for a usage mistake. ``--follow`` exits 0, 1 or 2
when the run succeeded, failed or was cancelled.
"""

from metaweb.cli.main import main

__all__ = ["main"]
