"""dpt-batch command line: a thin layer over functions a Python user can call too."""
from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dpt-batch")
def main() -> None:
    """Restore faces in video archives with DP-TempCoh."""


if __name__ == "__main__":
    main()
