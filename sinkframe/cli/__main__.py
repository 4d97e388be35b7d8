"""`python -m sinkframe.cli`: what tests and `run --workers` start as child processes."""
from sinkframe.cli.main import main

main()
