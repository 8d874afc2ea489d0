"""Train and evaluate a model on a dataset: ``python run_talkingface.py --model=X --dataset=Y``."""
import sys

from talkingface.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main())
