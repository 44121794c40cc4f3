"""``python -m methods``: list the techniques and which of them this version implements."""

import argparse
import importlib.util

from methods import TECHNIQUES


def implemented(name):
    return importlib.util.find_spec(f"methods.{name.replace('-', '_')}") is not None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m methods", description=__doc__)
    parser.parse_args(argv)
    width = max(len(name) for name, _, _ in TECHNIQUES)
    for name, title, paper in TECHNIQUES:
        status = "ready" if implemented(name) else "not yet"
        print(f"{name:<{width}}  {status:<8} {title} ({paper})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
