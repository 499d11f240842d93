"""`python -m layers_cli`: the same as the `layers` command."""

from layers_cli.cli import main

if __name__ == "__main__":
    main()
