"""The command-line interface: a thin Typer layer over `astra_cli.api`.

No science and no file formats here: commands parse options, call the API, and render what it
returns.
"""
