"""`python -m astra_cli` and the `astra` console script."""


def main() -> None:
    from astra_cli.cli.app import main as run_app

    run_app()


if __name__ == "__main__":
    main()
