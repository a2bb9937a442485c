"""``python -m sensi_edge ...``: the same entry point as the ``sensi-edge`` console script."""
from cli.main import main

if __name__ == "__main__":
    main()
