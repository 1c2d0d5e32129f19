"""`python -m cloudsim serve ...` and `python -m cloudsim generate ...`."""

from cloudsim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
