"""`python -m astra_cli` and the `astra` console script."""


def main() -> None:
    import atexit
    import gc

    from astra_cli.cli.app import main as run_app

    # Registered first, so run last: the objects of the modules a run imported (numpy and
    # astropy's hundred thousand) are left out of the collection the interpreter makes as it
    # exits, which costs about 0.1 s and frees nothing the process would miss. Files, the store
    # and the workers are closed before, by their own code; stdout and stderr are flushed after.
    atexit.register(gc.freeze)
    run_app()


if __name__ == "__main__":
    main()
