# SPDX-License-Identifier: GPL-2.0-or-later
"""Create the tap device inside the namespace and configure it.

Parent only. ``setns()`` applies per thread, so a short-lived thread enters
the target network namespace, opens ``/dev/net/tun``, creates the tap with
a virtio-net header and TSO/checksum offloads, and (``--config-net``)
configures addresses, routes and MTU through pyroute2. The fd keeps
working from any namespace afterwards and is handed to the worker.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import struct
import threading
from collections.abc import Callable
from typing import Any

from sandbox import ns

from ..config import Config
from ..errors import SetupError

TUNSETIFF = 0x400454CA
TUNSETVNETHDRSZ = 0x400454D8
TUNSETOFFLOAD = 0x400454D0
SIOCGIFHWADDR = 0x8927
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 1, 2, 4
VNET_HDR_LEN = 10
NS_MTU_DEFAULT = 65520


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
    """Create the tap in the calling thread's netns: (fd, actual name)."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise SetupError("tap device: open /dev/net/tun", e) from None
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        ifr = fcntl.ioctl(fd, TUNSETIFF, ifr)
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    except OSError as e:
        os.close(fd)
        raise SetupError(f"tap device: create {name}", e) from None
    real = ifr[:16].rstrip(b"\0").decode()
    return fd, real


def configure(cfg: Config, ifname: str, config_net: bool) -> bytes:
    """Bring lo up, optionally configure the tap; return the tap's MAC."""
    from pyroute2 import IPRoute

    o = cfg.opts
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")
        if lo:
            ipr.link("set", index=lo[0], state="up")
        idx = ipr.link_lookup(ifname=ifname)[0]
        if o.ns_mac:
            ipr.link("set", index=idx, address=":".join(f"{b:02x}" for b in o.ns_mac))
        if config_net:
            mtu = cfg.mtu or NS_MTU_DEFAULT
            ipr.link("set", index=idx, mtu=mtu)
            ipr.link("set", index=idx, state="up")
            if cfg.v4:
                ipr.addr("add", index=idx, address=str(cfg.v4.addr), prefixlen=cfg.v4.prefix)
                if not cfg.v4.gw_onlink:
                    ipr.route("add", dst=f"{cfg.v4.gw}/32", oif=idx, scope=253)
                ipr.route("add", dst="0.0.0.0/0", gateway=str(cfg.v4.gw), oif=idx)
            if cfg.v6:
                ipr.addr("add", index=idx, address=str(cfg.v6.addr), prefixlen=cfg.v6.prefix,
                         flags=0x02)  # IFA_F_NODAD
                net = ipaddress.IPv6Network(f"{cfg.v6.addr}/{cfg.v6.prefix}", strict=False)
                if not cfg.v6.gw.is_link_local and cfg.v6.gw not in net:
                    ipr.route("add", dst=f"{cfg.v6.gw}/128", oif=idx, family=10)
                ipr.route("add", dst="::/0", gateway=str(cfg.v6.gw), oif=idx, family=10)
        link = ipr.get_links(idx)[0]
        mac = link.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00"
    return bytes.fromhex(mac.replace(":", ""))


def create_and_configure(cfg: Config, netns_fd: int) -> tuple[int, str, bytes]:
    """Tap fd, its name and the namespace side MAC, in the target netns."""

    def work() -> tuple[int, str, bytes]:
        fd, name = open_tap(cfg.ns_ifname)
        try:
            mac = configure(cfg, name, cfg.opts.config_net)
        except SetupError:
            os.close(fd)
            raise
        except Exception as e:  # pyroute2 raises NetlinkError and friends
            os.close(fd)
            raise SetupError("namespace network configuration (netlink)", e) from None
        return fd, name, mac

    return in_netns(netns_fd, work, "tap device")
