# SPDX-License-Identifier: GPL-2.0-or-later
"""Create the tap device inside the namespace and configure it.

Parent only. ``setns()`` applies per thread, so a short-lived thread enters
the target network namespace, opens ``/dev/net/tun``, creates the tap with
a virtio-net header and TSO/checksum offloads (and UDP segmentation offload
where the kernel has it, 6.2 and later: worker/udp.py splits such frames), and (``--config-net``)
configures addresses, routes and MTU through rtnetlink (``rtnl``). The fd keeps
working from any namespace afterwards and is handed to the worker.

The recipe of the tap itself is ``passt_sep.early.make_tap``: when pasta
attaches to an existing namespace, the first stage has usually made the
tap already, before the program loaded (early.py); ``create_and_configure``
adopts that fd if it is in this very namespace with the name chosen here,
and closes it otherwise (the tap vanishes with its last fd).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Callable

from sandbox import ns

from ..config import Config
from ..early import EarlyTap, make_tap
from ..errors import SetupError
from ..log import log
from .rtnl import IFA_F_NODAD, Rtnl

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

NS_MTU_DEFAULT = 65520
TAP_MAX_MTU = 65521  # the tun driver's maximum: 65535 less the Ethernet header
IPV6_MIN_MTU = 1280  # the kernel turns IPv6 off on a link below this (RFC 8200 5)


def in_netns(netns_fd: int, fn: Callable[[], Any], step: str) -> Any:
    """Run fn in a thread that has entered the network namespace."""
    result: list[Any] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            ns.setns(netns_fd, ns.CLONE_NEWNET)
            result.append(fn())
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            error.append(e)

    t = threading.Thread(target=body, name=step)
    t.start()
    t.join()
    if error:
        e = error[0]
        if isinstance(e, SetupError):
            raise e
        raise SetupError(step, e)
    return result[0] if result else None


def open_tap(name: str) -> tuple[int, str]:
    """Create the tap in the calling thread's netns: (fd, actual name).

    The recipe (flags, virtio-net header, offloads with the USO probe) is
    early.make_tap's, which the first stage uses too."""
    try:
        fd, real, uso = make_tap(name)
    except OSError as e:
        raise SetupError(f"tap device: create {name}", e) from None
    log_offloads(uso)
    return fd, real


def log_offloads(uso: bool) -> None:
    """What the tap offloads, in the debug log."""
    if uso:
        log.debug("tap: offloads csum, tso4, tso6, uso4, uso6")
    else:
        log.debug("tap: offloads csum, tso4, tso6 (no uso: this kernel lacks it)")


def configure(cfg: Config, ifname: str, config_net: bool) -> bytes:
    """Bring lo up, optionally configure the tap; return the tap's MAC."""
    o = cfg.opts
    with Rtnl() as nl:
        lo = nl.link_by_name("lo")
        if lo is not None:
            nl.set_link(lo.index, up=True)
        tap = nl.link_by_name(ifname)
        if tap is None:
            raise SetupError("tap device", f"{ifname} vanished")
        idx = tap.index
        if o.ns_mac:
            nl.set_link(idx, mac=o.ns_mac)
        if config_net:
            # -m is what DHCP and RA advertise; the link takes what the tap allows
            mtu = min(cfg.mtu or NS_MTU_DEFAULT, TAP_MAX_MTU)
            nl.set_link(idx, mtu=mtu, up=True)
            if cfg.v4:
                v4 = cfg.v4
                nl.add_addr(idx, socket.AF_INET, v4.addr.packed, v4.prefix)
                if not v4.gw_onlink:
                    nl.add_route(socket.AF_INET, idx, v4.gw.packed, 32)
                nl.add_route(socket.AF_INET, idx, None, 0, v4.gw.packed)
            if cfg.v6 and mtu < IPV6_MIN_MTU:
                log.warn(f"MTU {mtu} is below IPv6's minimum of {IPV6_MIN_MTU}: "
                         f"no IPv6 address or route on {ifname}")
            elif cfg.v6 and o.config_net6:
                v6 = cfg.v6
                nl.add_addr(idx, socket.AF_INET6, v6.addr.packed, v6.prefix, IFA_F_NODAD)
                net = ipaddress.IPv6Network(f"{v6.addr}/{v6.prefix}", strict=False)
                if not v6.gw.is_link_local and v6.gw not in net:
                    nl.add_route(socket.AF_INET6, idx, v6.gw.packed, 128)
                nl.add_route(socket.AF_INET6, idx, None, 0, v6.gw.packed)
        link = nl.link_by_name(ifname)
    mac = link.mac if link is not None and link.mac else bytes(6)
    return mac


def create_and_configure(cfg: Config, netns_fd: int, early: EarlyTap | None = None) -> tuple[int, str, bytes]:
    """Tap fd, its name and the namespace side MAC, in the target netns.

    ``early``: the tap the first stage made (passt_sep.early); adopted if it
    is in this very namespace with the name chosen here, else closed."""
    adopted = early.take(netns_fd, cfg.ns_ifname) if early is not None else None
    if adopted is not None:
        log.debug(f"tap: {cfg.ns_ifname} made by the first stage, adopted")
        log_offloads(early.uso)  # type: ignore[union-attr]

    def work() -> tuple[int, str, bytes]:
        fd, name = (adopted, cfg.ns_ifname) if adopted is not None else open_tap(cfg.ns_ifname)
        try:
            mac = configure(cfg, name, cfg.opts.config_net)
        except SetupError:
            if adopted is None:
                os.close(fd)
            raise
        except OSError as e:
            if adopted is None:
                os.close(fd)
            raise SetupError("namespace network configuration (netlink)", e) from None
        return fd, name, mac

    try:
        return in_netns(netns_fd, work, "tap device")
    except BaseException:
        if adopted is not None:  # the first stage's tap: gone with its fd
            os.close(adopted)
        raise
