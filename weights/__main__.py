"""``python -m weights``: list, fetch, convert and inspect checkpoints.

::

    python -m weights list                                   known checkpoints and what is cached
    python -m weights fetch vgg16 [--force] [--url URL]      download, verify SHA-256, convert
    python -m weights convert FILE.pth [--arch vgg16] -o OUT.safetensors [--force]
    python -m weights info FILE                              a .pth or .safetensors file's contents

Every failure prints one ``error: ...`` line (or a short block listing mismatched keys) and exits
non-zero: 1 for a bad, missing, truncated, unsafe or mismatched file, a wrong hash or a failed
download; 2 for a usage mistake (unknown architecture or checkpoint name, bad options); 130 when
interrupted. Tracebacks are shown only with ``MINIGRAD_DEBUG=1``. Only ``fetch`` uses the network.
"""

import argparse
import json
import math
import os
import sys

from weights import archs, registry
from weights.convert import convert_pth, read_format
from weights.errors import CheckpointError
from weights.safetensors import read_header
from weights.torch_pth import load_pth
from weights.untrusted import escaped, shown, shown_shape

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
ERROR_WIDTH = 400  # characters per printed error line, at most


class UsageError(Exception):
    """A mistake in the command line rather than in a file."""


def _mib(n):
    return f"{n / 2**20:.1f}"


def cmd_list(args):
    home = registry.cache_dir()
    print(f"cache: {home}  (set MINIGRAD_HOME to move it)")
    rows = [("name", "arch", "format", "MiB", "sha256", "local", "url")]
    for c in registry.CHECKPOINTS.values():
        local = []
        if registry.converted_path(c.name).exists():
            local.append("converted")
        if registry.download_path(c).exists():
            local.append("downloaded")
        size = _mib(c.size) if c.exact_size else "~" + _mib(c.size)
        digest = c.sha256 if c.full_digest else c.sha256 + "... (prefix)"
        rows.append((c.name, c.arch, c.fmt, size, digest, ",".join(local) or "-", c.url))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1])
    return EXIT_OK


def cmd_fetch(args):
    entry = _entry(args.name)
    out = registry.converted_path(entry.name)
    if out.exists() and not args.force:
        print(f"{entry.name}: already converted at {out} (use --force to redo)")
        return EXIT_OK
    dest = registry.download_path(entry)
    if dest.exists() and not args.force:
        print(f"{entry.name}: using the earlier download {dest}")
        digest = registry.sha256_file(dest)
    else:
        url = args.url or entry.url
        print(f"{entry.name}: downloading {escaped(url, 300)}", file=sys.stderr)
        digest = registry.download(url, dest, expected_size=entry.size, max_size=entry.max_size,
                                   progress=not args.quiet)
    try:
        registry.verify_sha256(entry, digest, dest)
    except CheckpointError:
        dest.unlink()
        print(f"removed the bad download {dest}", file=sys.stderr)
        raise
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create the cache folder {out.parent}: {e.strerror or e}") from None
    res = convert_pth(dest, out, entry.arch, overwrite=True)
    print(f"{entry.name}: sha256 {digest} ok; {res.count} tensors, {_mib(res.nbytes)} MiB -> {out}")
    return EXIT_OK


def cmd_convert(args):
    if args.arch is not None and args.arch not in archs.ARCHS:
        raise UsageError(f"unknown architecture {shown(args.arch)}; known: {', '.join(archs.ARCHS)}")
    if not os.path.exists(args.file):
        raise CheckpointError(f"{escaped(args.file, 300)}: no such file")
    res = convert_pth(args.file, args.output, args.arch, overwrite=args.force, check_hash=not args.no_hash_check)
    print(
        f"{escaped(args.file, 300)} ({res.fmt}, sha256 {res.sha256}) -> {escaped(res.path, 300)}: {res.arch}, "
        f"{res.count} tensors, {_mib(res.nbytes)} MiB"
    )
    return EXIT_OK


def cmd_info(args):
    fmt = read_format(args.file)  # refuses devices and FIFOs before anything reads them
    size = os.path.getsize(args.file)
    name = escaped(args.file, 300)
    if fmt == "safetensors":
        header = read_header(args.file)
        print(f"{name}: safetensors, {size} bytes, {len(header.tensors)} tensors")
        for k, v in sorted(header.metadata.items()):
            print(f"  {escaped(k, 60)}: {escaped(_compact_json(v) if k == 'preprocessing' else v, 300)}")
        shapes = {n: t.shape for n, t in header.tensors.items()}
        rows = [(n, t.dtype, t.shape) for n, t in header.tensors.items()]
    else:
        digest = registry.sha256_file(args.file)
        tensors = load_pth(args.file)
        print(f"{name}: torch checkpoint ({fmt} format), {size} bytes, {len(tensors)} tensors")
        print(f"  sha256: {digest}")
        entry = registry.find_by_filename(args.file)
        if entry is not None:
            try:
                registry.verify_sha256(entry, digest, args.file)
                print(f"  registry: {entry.name} (hash ok)")
            except CheckpointError as e:
                print(f"  registry: {entry.name} -- {e}")
        shapes = {n: a.shape for n, a in tensors.items()}
        rows = [(n, str(a.dtype), a.shape) for n, a in tensors.items()]
    arch = archs.guess_arch(shapes)
    print(f"  architecture: {arch or 'none of ' + ', '.join(archs.ARCHS)}")
    print(f"  elements: {sum(math.prod(s) for s in shapes.values())}")
    rows = [(escaped(n), dtype, shown_shape(shape)) for n, dtype, shape in rows]
    width = max((len(r[0]) for r in rows), default=0)
    for n, dtype, shape in rows:
        print(f"    {n.ljust(width)}  {dtype:<8} {shape}")
    return EXIT_OK


def _compact_json(text):
    """``text`` re-printed compactly if it is a small JSON document (our preprocessing record)."""
    if len(text) > 4096:
        return text
    try:
        return json.dumps(json.loads(text))
    except (ValueError, RecursionError):
        return text


def _capped_lines(text, width=ERROR_WIDTH):
    """``text`` with every line cut to ``width`` characters: no message may flood a terminal."""
    return "\n".join(line if len(line) <= width else line[:width] + f"...(+{len(line) - width} characters)"
                     for line in text.split("\n"))


def _entry(name):
    try:
        return registry.get(name)
    except CheckpointError as e:
        raise UsageError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def build_parser():
    p = _Parser(prog="python -m weights", description="Checkpoints for minigrad: list, fetch, convert, inspect.")
    sub = p.add_subparsers(dest="command", metavar="{list,fetch,convert,info}", parser_class=_Parser)
    sub.required = True
    sub.add_parser("list", help="known checkpoints and what is in the cache")
    f = sub.add_parser("fetch", help="download a known checkpoint, verify its SHA-256 and convert it")
    f.add_argument("name", help=", ".join(registry.CHECKPOINTS))
    f.add_argument("--force", action="store_true", help="download and convert again")
    f.add_argument("--url", help="download from this URL (a mirror, or file:///path) instead of torchvision's")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    c = sub.add_parser("convert", help="convert a torch .pth file to safetensors")
    c.add_argument("file")
    c.add_argument("--arch", help="architecture (guessed from the keys when left out): " + ", ".join(archs.ARCHS))
    c.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    c.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    c.add_argument("--no-hash-check", action="store_true", help="skip the SHA-256 check of known downloads")
    i = sub.add_parser("info", help="show what a .pth or .safetensors file holds")
    i.add_argument("file")
    return p


def main(argv=None):
    commands = {"list": cmd_list, "fetch": cmd_fetch, "convert": cmd_convert, "info": cmd_info}
    for stream in (sys.stdout, sys.stderr):  # a name the terminal cannot encode is escaped, not an error
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)
        return commands[args.command](args)
    except UsageError as e:
        print(_capped_lines(f"error: {e}"), file=sys.stderr)
        return EXIT_USAGE
    except CheckpointError as e:
        print(_capped_lines(f"error: {e}"), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug of ours: say so in one line unless debugging
        if os.environ.get("MINIGRAD_DEBUG"):
            raise
        print(f"error: internal error ({type(e).__name__}: {escaped(str(e), 200)}); rerun with MINIGRAD_DEBUG=1 "
              f"for details", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
