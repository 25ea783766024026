"""`python -m dxray.cli ...`: the `dxray` command (`dxray.cli.main`)."""

from dxray.cli.main import main

if __name__ == "__main__":
    main()
