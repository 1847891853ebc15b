"""Allow ``python -m medveil``."""

from medveil.cli.main import command

command()
