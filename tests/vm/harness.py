# SPDX-License-Identifier: GPL-2.0-or-later
"""A small qemu guest for passt-mode tests: Debian's kernel, busybox, virtio-net.

The guest is built from what the machine has (scripts/setup.sh installs
it): Debian's kernel ``/boot/vmlinuz-*``, the virtio-net modules of that
kernel (virtio_net, net_failover, failover and the virtio PCI transport;
``.ko.xz`` files are decompressed) and busybox-static. The initramfs is
written by Python (cpio "newc", no external tool) and cached under
``tests/.cache/vm/`` keyed by the kernel version and the contents.

Each boot gets its own test script: a second, uncompressed cpio archive
holding ``/test.sh`` is appended to the cached initramfs (the kernel
unpacks concatenated archives in order). The init script loads the
modules, prints ``VM-BOOTED``, runs ``/test.sh`` and powers off. Test
scripts use the shell function ``step NAME TIMEOUT CMD...``, which prints::

    STEP-BEGIN NAME
    ...output of CMD...
    STEP-END NAME rc=N

and ``Boot.steps`` parses that into ``{NAME: Step(rc, output)}``. Every
step is bounded by busybox ``timeout``; the whole boot by ``timeout`` of
``Boot.run``, after which qemu is killed.

qemu runs with TCG (``-accel tcg``) unless PASST_SEP_VM_ACCEL=kvm: nested
KVM on the build machines hung after "Booting from ROM". The network is
``-netdev stream,server=off,addr.type=unix,addr.path=SOCK`` with a
``virtio-net-pci`` device, as libvirt configures it for passt.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
CACHE = REPO / "tests" / ".cache" / "vm"
BUSYBOX = "/bin/busybox"
TARGET_MODULES = ("virtio_pci", "virtio_net")  # loaded with their dependencies
GUEST_MAC = "52:54:00:12:34:56"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in MODULE_NAMES; do
	[ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko
done
ip link set lo up
echo VM-BOOTED
step() {
	name=$1; secs=$2; shift 2
	echo "STEP-BEGIN $name"
	timeout -s KILL "$secs" "$@" 2>&1
	echo "STEP-END $name rc=$?"
}
[ -f /test.sh ] && . /test.sh
echo VM-DONE
sync
poweroff -f
"""

# udhcpc's hook: apply the lease and print what came with it
UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	echo "LEASE ip=$ip subnet=$subnet mask=$mask router=$router mtu=$mtu dns=$dns"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do ip route add default via "$r" dev "$interface"; break; done
	;;
esac
exit 0
"""


# -- cpio "newc" ---------------------------------------------------------------
class Cpio:
    """A minimal writer of the cpio format the kernel unpacks (newc)."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        self.ino += 1
        self.out.write(hdr.encode() + nb)
        self.out.write(b"\0" * (-(110 + len(nb)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        """A directory (0755)."""
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        """A regular file."""
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        """A symbolic link."""
        self._entry(name, 0o120777, target.encode())

    def finish(self) -> bytes:
        """The archive with its trailer."""
        self._entry("TRAILER!!!", 0)
        data = self.out.getvalue()
        return data + b"\0" * (-len(data) % 512)


# -- kernel and initramfs ----------------------------------------------------------
def kernel() -> tuple[str, str]:
    """(path of vmlinuz, version) of the newest Debian kernel with modules."""
    found = []
    for vmlinuz in glob.glob("/boot/vmlinuz-*"):
        kver = vmlinuz.removeprefix("/boot/vmlinuz-")
        if os.path.isdir(f"/lib/modules/{kver}/kernel"):
            found.append((kver, vmlinuz))
    if not found:
        raise FileNotFoundError("no /boot/vmlinuz-* with /lib/modules (install linux-image-amd64)")
    kver, vmlinuz = sorted(found)[-1]
    return vmlinuz, kver


def modules(kver: str) -> list[str]:
    """Paths (relative to /lib/modules/KVER) of TARGET_MODULES and their
    dependencies, in load order, from modules.dep."""
    deps: dict[str, list[str]] = {}
    with open(f"/lib/modules/{kver}/modules.dep") as f:
        for line in f:
            mod, _, rest = line.partition(":")
            deps[mod] = rest.split()
    by_name = {_name(m): m for m in deps}
    order: list[str] = []

    def visit(mod: str, depth: int = 0) -> None:
        if mod in order or depth > 16:
            return
        for d in reversed(deps.get(mod, [])):  # modules.dep lists the deepest last
            visit(d, depth + 1)
        order.append(mod)

    for name in TARGET_MODULES:
        if name in by_name:  # absent: built into the kernel
            visit(by_name[name])
    return order


def _name(path: str) -> str:
    base = os.path.basename(path)
    return base.split(".ko")[0]


def _module(kver: str, rel: str) -> bytes:
    path = f"/lib/modules/{kver}/{rel}"
    if rel.endswith(".xz"):
        with lzma.open(path, "rb") as f:
            return f.read()
    if rel.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    return Path(path).read_bytes()


def initramfs(kver: str) -> Path:
    """The cached base initramfs (gzip'd newc cpio) for kernel kver."""
    mods = {_name(rel): _module(kver, rel) for rel in modules(kver)}
    init = INIT.replace("MODULE_NAMES", " ".join(mods))
    busybox = Path(BUSYBOX).read_bytes()
    h = hashlib.sha256(init.encode() + UDHCPC_SCRIPT.encode() + busybox)
    for data in mods.values():
        h.update(data)
    path = CACHE / f"initrd-{kver}-{h.hexdigest()[:16]}.gz"
    if path.exists():
        return path
    c = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "usr", "usr/bin", "usr/sbin",
              "usr/share", "usr/share/udhcpc", "lib", "lib/modules", "root"):
        c.dir(d)
    c.file("bin/busybox", busybox, 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("init", init.encode(), 0o755)
    c.file("usr/share/udhcpc/default.script", UDHCPC_SCRIPT.encode(), 0o755)
    for name, data in mods.items():
        c.file(f"lib/modules/{name}.ko", data)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    packed = gzip.compress(c.finish(), 6)
    # the archive appended per boot must start 4-byte aligned: pad with zeros,
    # which the kernel skips between archives
    tmp.write_bytes(packed + b"\0" * (-len(packed) % 512))
    tmp.rename(path)
    return path


def with_script(base: Path, script: str, dest: Path,
                extra: dict[str, bytes] | None = None) -> Path:
    """base initramfs + an archive holding /test.sh, written to dest.

    ``extra`` maps more paths (relative, their directories created) to the
    contents of executable files, e.g. ``guest_tools()`` or ``host_binary()``.
    """
    c = Cpio()
    c.file("test.sh", script.encode(), 0o755)
    made: set[str] = set()
    for name, data in sorted((extra or {}).items()):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                made.add(d)
                c.dir(d)
        c.file(name, data, 0o755)
    with open(dest, "wb") as f:
        f.write(base.read_bytes())
        f.write(c.finish())
    return dest


UDPECHO_SRC = Path(__file__).with_name("udpecho.c")


def guest_tools() -> dict[str, bytes]:
    """``bin/udpecho`` (tests/vm/udpecho.c), built with ``gcc -static`` and cached."""
    src = UDPECHO_SRC.read_bytes()
    path = CACHE / f"udpecho-{hashlib.sha256(src).hexdigest()[:16]}"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        subprocess.run(["gcc", "-static", "-O2", "-o", str(tmp), str(UDPECHO_SRC)],
                       check=True, timeout=120, capture_output=True)
        tmp.rename(path)
    return {"bin/udpecho": path.read_bytes()}


def host_binary(path: str) -> dict[str, bytes]:
    """A dynamically linked host binary and the libraries ``ldd`` lists, at the
    same paths (the guest is the same distribution), for ``with_script``."""
    out = subprocess.run(["ldd", path], check=True, timeout=30, capture_output=True,
                         text=True).stdout
    files = {path.lstrip("/"): Path(path).read_bytes()}
    for lib in re.findall(r"(/\S+) \(0x", out):
        files[lib.lstrip("/")] = Path(lib).resolve().read_bytes()
    return files


# -- one boot -------------------------------------------------------------------------
@dataclass
class Step:
    """Outcome of one ``step`` of a test script."""

    rc: int
    output: str


STEP_RE = re.compile(r"^STEP-BEGIN (\S+)\n(.*?)^STEP-END \1 rc=(\d+)$", re.S | re.M)


def qemu_argv(vmlinuz: str, initrd: Path, sock: str, console: Path,
              memory_mib: int = 256) -> list[str]:
    """The qemu command line of a boot (passt socket, serial console to a file)."""
    accel = os.environ.get("PASST_SEP_VM_ACCEL", "tcg")
    cpu = ["-cpu", "host"] if accel == "kvm" else ["-cpu", "max"]
    return ["qemu-system-x86_64", "-accel", accel, *cpu, "-m", str(memory_mib), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-chardev", f"file,id=con,path={console}", "-serial", "chardev:con",
            "-kernel", vmlinuz, "-initrd", str(initrd),
            "-append", "console=ttyS0 quiet panic=-1 mitigations=off tsc=reliable",
            "-netdev", f"stream,id=n0,server=off,addr.type=unix,addr.path={sock}",
            "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC},romfile="]


class Boot:
    """One run of the guest with a test script; see the module doc."""

    def __init__(self, workdir: Path, script: str,
                 extra: dict[str, bytes] | None = None, memory_mib: int = 256) -> None:
        self.workdir = workdir
        vmlinuz, kver = kernel()
        self.vmlinuz = vmlinuz
        self.memory_mib = memory_mib
        self.initrd = with_script(initramfs(kver), script, workdir / "initrd.img", extra)
        self.console = workdir / "console.log"
        self.boot_seconds: float | None = None
        self.seconds: float | None = None

    def argv(self, sock: str) -> list[str]:
        """qemu's command line."""
        return qemu_argv(self.vmlinuz, self.initrd, sock, self.console, self.memory_mib)

    def text(self) -> str:
        """The console so far, with carriage returns removed."""
        try:
            return self.console.read_text(errors="replace").replace("\r", "")
        except OSError:
            return ""

    def run(self, popen: Callable[..., subprocess.Popen], sock: str,
            timeout: float = 150) -> str:
        """Boot with qemu started by ``popen(argv, ...)``; wait for VM-DONE or exit.

        Returns the console text. qemu is killed after ``timeout`` seconds.
        """
        t0 = time.monotonic()
        p = popen(self.argv(sock), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                  stderr=open(self.workdir / "qemu.err", "wb"))
        try:
            while time.monotonic() - t0 < timeout:
                text = self.text()
                if self.boot_seconds is None and "VM-BOOTED" in text:
                    self.boot_seconds = time.monotonic() - t0
                if "VM-DONE" in text or p.poll() is not None:
                    break
                time.sleep(0.2)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            self.seconds = time.monotonic() - t0
        return self.text()

    def steps(self) -> dict[str, Step]:
        """Parsed ``step`` results."""
        return {m.group(1): Step(int(m.group(3)), m.group(2)) for m in STEP_RE.finditer(self.text())}

    def qemu_errors(self) -> str:
        """What qemu wrote on stderr."""
        try:
            return (self.workdir / "qemu.err").read_text(errors="replace")
        except OSError:
            return ""


def available() -> str | None:
    """Why a VM cannot be booted here, or None."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 missing (scripts/setup.sh installs qemu-system-x86)"
    if not os.path.exists(BUSYBOX):
        return "busybox-static missing"
    try:
        kernel()
    except FileNotFoundError as e:
        return str(e)
    return None
