"""``python -m methods guided-backprop``: Springenberg et al. 2015, computed by :mod:`methods.backprop_images`."""

from methods.backprop_images import add_shared_cli_arguments, guided_backprop, parse_unit, run_technique

__all__ = ["guided_backprop", "add_cli_arguments", "run_cli"]


def add_cli_arguments(parser):
    add_shared_cli_arguments(parser)


def run_cli(args, model, x):
    return run_technique("guided-backprop", "guided", model, x, args.target, args.layer, parse_unit(args.unit))
