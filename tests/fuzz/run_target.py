# SPDX-License-Identifier: GPL-2.0-or-later
"""Run one fuzz target under atheris (libFuzzer, coverage-guided).

    python -m tests.fuzz.run_target TARGET [libFuzzer options] [CORPUS_DIR...]

passt_sep and sandbox are instrumented for coverage (atheris adds edge
counters to their bytecode at import); the target module and the
harness are not. Any exception out of the target, or a Finding, makes
libFuzzer write the input to ``-artifact_prefix``/crash-<sha1> and exit
non-zero. Inputs done are printed by libFuzzer as "Done N runs".
With -runs=0 the corpus directories are replayed once, nothing mutated.
"""

from __future__ import annotations

import sys


def main() -> None:
    import atheris

    if len(sys.argv) < 2:
        sys.stderr.write("usage: python -m tests.fuzz.run_target TARGET [libFuzzer options] [CORPUS...]\n")
        sys.exit(2)
    name = sys.argv.pop(1)
    with atheris.instrument_imports(include=["passt_sep", "sandbox"]):
        import passt_sep.cli  # noqa: F401
        import passt_sep.ports  # noqa: F401
        import passt_sep.proto.arp  # noqa: F401
        import passt_sep.proto.dhcp  # noqa: F401
        import passt_sep.proto.dhcpv6  # noqa: F401
        import passt_sep.proto.dnsname  # noqa: F401
        import passt_sep.proto.icmp  # noqa: F401
        import passt_sep.proto.ndp  # noqa: F401
        import passt_sep.proto.packet  # noqa: F401
        import passt_sep.proto.tcp  # noqa: F401
        import passt_sep.proto.udp  # noqa: F401
        import passt_sep.qrap  # noqa: F401
        import passt_sep.worker.loop  # noqa: F401
        import passt_sep.worker.stream  # noqa: F401
    from .targets import TARGETS, quiet_log

    if name not in TARGETS:
        sys.stderr.write(f"unknown target {name!r}; targets: {', '.join(TARGETS)}\n")
        sys.exit(2)
    quiet_log()
    target = TARGETS[name]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
