"""`python -m medseg ...` (also what `torchrun -m medseg ...` runs)."""

from medseg.cli.main import main

if __name__ == "__main__":
    main()
