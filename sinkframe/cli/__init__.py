"""The `sinkframe` command, one module per command group.

Click functions only parse arguments and report errors (`errors.exit_on_error`);
the work is done by the package each command belongs to.

| module | commands |
|---|---|
| main.py | the group, `run`, `validate`, `plugins`, `docs` |
| ops.py | `status`, `simulate`, `export` |
| alerts.py | `alerts` |
| schema.py | `schema plan`, `schema apply` |
| tenants.py | `tenants add`, `tenants plan`, `tenants list`, `tenants remove` |
| bench.py | `bench` |
| demo.py | `demo` |
| models.py | `models fit`, `models list`, `models evaluate` |
"""
from sinkframe.cli.main import cli, main

__all__ = ["cli", "main"]
