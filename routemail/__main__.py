"""Allows `python -m routemail`, which the receiver uses to start a run."""

from routemail.cli import main

main()
