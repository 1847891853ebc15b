"""Command-line interface: one module per subcommand, each exposing ``add_subparser``."""
