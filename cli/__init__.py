"""The `vqcodec` command line: a thin typer layer over the `vqcodec` Python API."""
