import os
import sys
from pathlib import Path

# Tests never reach the Hub: every model they load is built here or ships with the package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))
