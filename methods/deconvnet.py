"""``python -m methods deconvnet``: Zeiler & Fergus 2014, computed by :mod:`methods.backprop_images`."""

from methods.backprop_images import add_shared_cli_arguments, deconvnet, parse_unit, run_technique

__all__ = ["deconvnet", "add_cli_arguments", "run_cli"]


def add_cli_arguments(parser):
    add_shared_cli_arguments(parser)


def run_cli(args, model, x):
    return run_technique("deconvnet", "deconvnet", model, x, args.target, args.layer, parse_unit(args.unit))
