#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Write the manual pages in man/ from one text per option.

Owns the prose of passt.1 and pasta.1 (one entry per option of
``passt_sep.cli.OPTIONS``, each page taking the options of its mode) and
writes them with qrap.1 and passt-sep-slirp4netns.1 (whose text lives
here too). ``tests/unit/test_manpages.py`` checks that the committed
pages are what this script writes, that each page names exactly the
options its mode (or the slirp4netns front end) accepts, and that man and
groff render them without a warning.

    scripts/gen_man.py           write man/*.1
    scripts/gen_man.py --check   exit 1 if a page in man/ differs

Markup in the texts: B<bold>, I<italic>; an empty line starts a new
paragraph inside an option's entry.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passt_sep import __version__  # noqa: E402
from passt_sep.cli import OPTIONS, PASST, PASTA  # noqa: E402

MAN_DIR = ROOT / "man"
DATE = "2026-12"
SOURCE = f"passt-sep {__version__}"

# long name -> (value name or None, text); modes come from cli.OPTIONS.
# Where the two modes differ, the text is a dict by mode.
TEXT: dict[str, tuple[str | None, str | dict[str, str]]] = {
    "debug": (None, "Log debugging messages as well."),
    "trace": (None, "Log even more than B<--debug>, which it implies."),
    "quiet": (None, "Log warnings and errors only; not the start-up summary."),
    "foreground": (None, {
        PASST: "Stay in the foreground. Without it, B<passt> forks into the background "
               "once its socket is listening, and the first process exits 0.",
        PASTA: "Stay in the foreground. When attached to an existing namespace (B<--netns> "
               "or a I<PID>) B<pasta> otherwise forks into the background once the namespace "
               "is configured; around a command it always stays in the foreground and exits "
               "with the command's status.",
    }),
    "stderr": (None, "Log to standard error as well. In the foreground, standard error is "
                     "where messages go anyway."),
    "log-file": ("PATH", "Write messages to I<PATH> (created with mode 0600, truncated, never "
                         "through a symbolic link) instead of standard error."),
    "log-size": ("BYTES", "Keep the log file under I<BYTES> (default 1 MiB, at least 20480): "
                          "when it fills up, the oldest lines are dropped."),
    "runas": ("UID|UID:GID|LOGIN|LOGIN:GROUP",
              "Started as root, run as this user and group once set-up is done. Default: "
              "I<nobody>. Both processes, the privileged parent and the sandboxed worker, "
              "change."),
    "help": (None, "Print a summary of the options and exit 0."),
    "version": (None, "Print the version and exit 0."),
    "pcap": ("FILE", "Capture the frames exchanged with the guest (both directions) to "
                     "I<FILE>, in the classic pcap format."),
    "pcap-size": ("BYTES", "Stop capturing, with one warning, before the capture file would "
                           "grow past I<BYTES> (default 1 GiB). The run goes on. A passt-sep "
                           "addition."),
    "pid": ("FILE", "Write the process ID of the long-running process to I<FILE> once it is "
                    "ready, before the first process exits."),
    "mtu": ("MTU", {
        PASST: "Advertise I<MTU> to the guest through DHCP (option 26) and router "
               "advertisements (default 65520); 0 advertises none.",
        PASTA: "Advertise I<MTU> to the namespace through DHCP (option 26) and router "
               "advertisements (default 65520); 0 advertises none. With B<--config-net> "
               "the tap device gets it too; below 1280 it gets no IPv6.",
    }),
    "address": ("ADDR", "Give the guest I<ADDR> (IPv4 through DHCP, IPv6 through DHCPv6) "
                        "instead of the address of the host's template interface. Once per "
                        "address family."),
    "netmask": ("MASK", "The IPv4 netmask handed out with the address, dotted or as a prefix "
                        "length."),
    "mac-addr": ("ADDR", "The MAC address the guest sees as its peer (the gateway's)."),
    "gateway": ("ADDR", "The default gateway handed to the guest, IPv4 through DHCP, IPv6 "
                        "through router advertisements. Once per address family."),
    "interface": ("NAME", "Take addresses and routes from the host interface I<NAME> instead "
                          "of the one with the first default route."),
    "outbound": ("ADDR", "Use I<ADDR> as the source of the guest's connections and datagrams "
                         "on the host. Once per address family."),
    "outbound-if4": ("NAME", "Bind the guest's IPv4 flows to the host interface I<NAME>."),
    "outbound-if6": ("NAME", "Bind the guest's IPv6 flows to the host interface I<NAME>."),
    "dns": ("ADDR", "Hand out I<ADDR> as a resolver instead of those of /etc/resolv.conf; "
                    "may be given several times. I<none> hands out none."),
    "search": ("LIST", "Hand out the space-separated domains of I<LIST> as the search list "
                       "instead of that of /etc/resolv.conf. I<none> hands out none."),
    "no-dhcp-dns": (None, "Do not send resolvers through DHCP, DHCPv6 or router "
                          "advertisements (they are sent by default)."),
    "dhcp-dns": (None, "Send resolvers through DHCP, DHCPv6 and router advertisements "
                       "(not sent by default)."),
    "no-dhcp-search": (None, "Do not send the search list through DHCP, DHCPv6 or router "
                             "advertisements (it is sent by default)."),
    "dhcp-search": (None, "Send the search list through DHCP, DHCPv6 and router "
                          "advertisements (not sent by default)."),
    "dns-forward": ("ADDR", "DNS queries (UDP and TCP, port 53) the guest sends to I<ADDR> "
                            "go to the host's resolver (see B<--dns-host>); replies come back "
                            "from I<ADDR>. Once per address family."),
    "dns-host": ("ADDR", "The host-side resolver that queries to the B<--dns-forward> address "
                         "go to. Default: the first resolver of /etc/resolv.conf or of "
                         "B<--dns>. Per address family; a later one replaces an earlier one."),
    "ipv4-only": (None, "IPv4 only: the guest gets no IPv6 address or route, and IPv6 frames "
                        "are dropped."),
    "ipv6-only": (None, "IPv6 only: the guest gets no IPv4 address or route, and IPv4 frames "
                        "(ARP too) are dropped."),
    "no-tcp": (None, "Drop the guest's TCP and forward no TCP port."),
    "no-udp": (None, "Drop the guest's UDP and forward no UDP port."),
    "no-icmp": (None, "Do not relay ICMP and ICMPv6 echo requests."),
    "no-dhcp": (None, "Do not answer DHCP."),
    "no-ndp": (None, "Do not answer neighbour or router solicitations."),
    "no-dhcpv6": (None, "Do not answer DHCPv6."),
    "no-ra": (None, "Send no router advertisements."),
    "no-map-gw": (None, "Do not make the gateway address lead to the host's loopback "
                        "(same as B<--map-host-loopback none>)."),
    "map-host-loopback": ("ADDR", "Traffic from the guest to I<ADDR> goes to the host's "
                                  "loopback (127.0.0.1 or ::1). Default: the gateway address. "
                                  "One per address family, the last one wins; I<none> maps "
                                  "nothing."),
    "map-guest-addr": ("ADDR", "Traffic from the guest to I<ADDR> goes to the address the "
                               "guest was given, as the host has it, so that the guest can "
                               "reach the host's services on it. One per address family, the "
                               "last one wins; I<none> maps nothing."),
    "hostname": ("NAME", "Send I<NAME> to the guest's DHCP client as its host name "
                         "(option 12)."),
    "fqdn": ("NAME", "Send I<NAME> to the guest as its fully qualified domain name: DHCP "
                     "option 81 and DHCPv6 option 39."),
    "freebind": (None, "Let B<-t> and B<-u> bind addresses the host does not have (yet), "
                       "with IP_FREEBIND and IPV6_FREEBIND: forwarding starts working when "
                       "the address appears."),
    "egress-deny": ("SPEC", "Refuse the guest's traffic to I<SPEC>: "
                            "I<ADDR>[/I<PREFIX>][:I<PORTS>], IPv6 with ports in brackets "
                            "([I<ADDR>[/I<PREFIX>]]:I<PORTS>). The destination is matched as the "
                            "host sees it (the mapped gateway is 127.0.0.1 or ::1). With "
                            "I<PORTS>, TCP and UDP to those ports; without, every protocol. "
                            "May be given several times. A passt-sep addition."),
    "egress-allow": ("SPEC", "Refuse the guest's traffic to anything no B<--egress-allow> "
                             "rule matches (B<--egress-deny> rules apply first). Same I<SPEC> "
                             "as B<--egress-deny>; may be given several times. A passt-sep "
                             "addition."),
    # branch api's option: its text waits here, used once the option is in the table
    "api-socket": ("PATH", "Serve a JSON control API on the UNIX socket I<PATH>: "
                           "slirp4netns's B<add_hostfwd>, B<list_hostfwd> and B<remove_hostfwd>, "
                           "and B<list_flows> and B<stats>; B<passt-sep ctl> is a client. A "
                           "passt-sep addition."),
    "socket": ("PATH", "Listen for the hypervisor on the UNIX socket I<PATH>. Default: the "
                       "first of /tmp/passt_1.socket to /tmp/passt_64.socket that is free."),
    "fd": ("FD", "Use the already connected stream socket I<FD> instead of listening; "
                 "implies B<--one-off>."),
    "one-off": (None, "Exit 0 when the first client goes away instead of waiting for the "
                      "next."),
    "tcp-ports": ("SPEC", {
        PASST: "Forward TCP ports of the host to the guest; see B<PORT SPECIFICATIONS>. "
               "Default: I<none>.",
        PASTA: "Forward TCP ports of the host to the namespace; see B<PORT SPECIFICATIONS>. "
               "Default: I<auto>.",
    }),
    "udp-ports": ("SPEC", {
        PASST: "Forward UDP ports of the host to the guest, as B<-t>. Default: I<none>.",
        PASTA: "Forward UDP ports of the host to the namespace, as B<-t>. Default: I<auto>.",
    }),
    "ns-ifname": ("NAME", "Name of the tap device in the namespace. Default: the name of the "
                          "host's template interface."),
    "tcp-ns": ("SPEC", "Forward TCP ports of the namespace's loopback to the host's loopback. "
                       "Default: I<auto>."),
    "udp-ns": ("SPEC", "Forward UDP ports of the namespace's loopback to the host's loopback. "
                       "Default: I<auto>."),
    "host-lo-to-ns-lo": (None, "Connections and datagrams from the host's loopback to a "
                               "forwarded port reach the namespace's loopback. passt-sep "
                               "always does so; the option is accepted for the programs that "
                               "pass it."),
    "userns": ("PATH", "The user namespace to join with B<--netns> or a I<PID>. Default: the "
                       "owner of the network namespace."),
    "netns": ("PATH|NAME", "Attach to this network namespace: a path, or a name under "
                           "/run/netns. Not together with a I<PID> or a command."),
    "netns-only": (None, "Join only the network namespace, no user namespace."),
    "no-netns-quit": (None, "Keep running when the namespace given as a path disappears."),
    "config-net": (None, "Configure the tap device: bring it up, give it the address, the "
                         "default route and the MTU, and bring up the loopback."),
    "no-copy-routes": (None, "With B<--config-net>, set up only the default route. passt-sep "
                             "never copies more; accepted for the programs that pass it."),
    "no-copy-addrs": (None, "With B<--config-net>, set up a single address per family. "
                            "passt-sep never copies more; accepted for the programs that "
                            "pass it."),
    "ns-mac-addr": ("ADDR", "The MAC address of the tap device in the namespace."),
}

HEAD = r""".\" SPDX-License-Identifier: GPL-2.0-or-later
.\" Written by scripts/gen_man.py: edit the texts there, then run it.
.TH {name} 1 "{date}" "{source}" "User Commands"
"""


def inline(text: str) -> str:
    """Plain text with B<>/I<> markup to troff: escapes, fonts, line breaks."""
    text = text.replace("\\", "\\e")
    # a minus sign (\-) in bold text (option names) and in words that start
    # with '-'; a plain hyphen inside ordinary words
    text = re.sub(r"B<([^<>]*)>", lambda m: "\x01" + m[1].replace("-", "\x02") + "\x03", text)
    text = re.sub(r"(?<![\w\x02])-[\w-]*", lambda m: m[0].replace("-", "\x02"), text)
    text = re.sub(r"I<([^<>]*)>", r"\\fI\1\\fR", text)
    text = text.replace("\x01", "\\fB").replace("\x03", "\\fR").replace("\x02", "\\-")
    out = []
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def para(text: str) -> str:
    """Paragraphs separated by empty lines, each after .PP."""
    return "\n".join(".PP\n" + inline(p) for p in text.strip().split("\n\n")) + "\n"


def item(names: list[str], value: str | None, text: str) -> str:
    """One .TP entry: the option's spellings, its value, its text."""
    spell = ", ".join(f"\\fB{inline(n)}\\fR" for n in names)
    if value:
        spell += " \\fI" + inline(value) + "\\fR"
    body = text.strip().split("\n\n")
    rest = "".join(".IP\n" + inline(p) + "\n" for p in body[1:])
    return f".TP\n{spell}\n{inline(body[0])}\n{rest}"


def options_of(mode: str) -> list[str]:
    """The option entries of one mode, in the table's order."""
    out = []
    for o in OPTIONS:
        if mode not in o.modes:
            continue
        if o.long not in TEXT:
            raise SystemExit(f"gen_man: option --{o.long} has no text in scripts/gen_man.py")
        value, text = TEXT[o.long]
        if isinstance(text, dict):
            text = text[mode]
        names = ([f"-{o.short}"] if o.short else []) + [f"--{o.long}"]
        out.append(item(names, value, text))
    return out


PORTS = """
.SH PORT SPECIFICATIONS
.PP
A specification of \\fB\\-t\\fR, \\fB\\-u\\fR{ns} is one of:
.TP
\\fBnone\\fR
forward nothing;
.TP
\\fB{wide}\\fR
{wide_text}
.TP
[\\fIADDR\\fR[%\\fIIF\\fR]/]\\fIPORTS\\fR
a comma-separated list of ports and ranges (\\fIFIRST\\fR\\-\\fILAST\\fR), each
optionally followed by :\\fITARGET\\fR (the port, or first port, on the guest
side), and exclusions written ~\\fIPORT\\fR or ~\\fIFIRST\\fR\\-\\fILAST\\fR. A list
of exclusions only means every port below 49152 except those. \\fIADDR\\fR and
%\\fIIF\\fR restrict the host-side bind to an address and an interface.
.PP
The option may be given several times; the lists add up. Examples:
\\fB\\-t 22\\fR, \\fB\\-t 8080:80\\fR, \\fB\\-t 1000\\-2000,~1500\\fR,
\\fB\\-t 192.0.2.1/443\\fR, \\fB\\-t %eth0/22\\fR, \\fB\\-u 53\\fR.
"""


def passt_page() -> str:
    wide = PORTS.format(ns="", wide="all",
                        wide_text="every port below 49152 that can be bound (also written "
                                  "\\fIADDR\\fR/all or %\\fIIF\\fR/all);")
    return (HEAD.format(name="PASST", date=DATE, source=SOURCE)
            + ".SH NAME\npasst \\- user-mode networking for virtual machines (passt-sep)\n"
            + ".SH SYNOPSIS\n.B passt\n[\\fIOPTION\\fR]...\n"
            + ".SH DESCRIPTION\n"
            + para("""
B<passt> connects a virtual machine to the host's network without any privilege. The
hypervisor (qemu 7.2 or later with B<-netdev stream>, or an older one through B<qrap>(1))
connects to a UNIX socket and exchanges Ethernet frames, each preceded by its length as a
4-byte big-endian number. B<passt> answers ARP, NDP, DHCP and DHCPv6 itself and carries the
guest's TCP, UDP and ICMP echo traffic over ordinary sockets of the host, so the guest shares
the host's addresses and routes. Ports of the host can be forwarded to the guest.

This is passt-sep's B<passt>: the same command line as passt, run as two processes. A parent
sets up, creates the sockets the guest's traffic needs after checking each request, and
supervises; a worker, in namespaces of its own with an empty root, no capabilities and a
seccomp allow-list, translates the traffic. One client is served at a time; another one is
accepted and closed at once.""")
            + ".SH OPTIONS\n" + "".join(options_of(PASST))
            + wide
            + _common_tail("passt")
            + ".SH EXAMPLES\n"
            + para("Start B<passt>, then qemu on its socket:")
            + ".PP\n.nf\n.RS\n$ passt \\-\\-socket /tmp/vm.socket \\-t 2222:22\n"
            + "$ qemu\\-system\\-x86_64 ... \\-device virtio\\-net\\-pci,netdev=n \\e\n"
            + "    \\-netdev stream,id=n,server=off,addr.type=unix,addr.path=/tmp/vm.socket\n"
            + ".RE\n.fi\n"
            + ".SH SEE ALSO\n\\fBpasta\\fR(1), \\fBqrap\\fR(1), \\fBqemu\\fR(1), "
            + "\\fBpasst\\-sep\\-slirp4netns\\fR(1)\n")


def pasta_page() -> str:
    wide = PORTS.format(ns=", \\fB\\-T\\fR and \\fB\\-U\\fR", wide="auto",
                        wide_text="forward the ports that are bound on the other side, "
                                  "rescanned every second;")
    return (HEAD.format(name="PASTA", date=DATE, source=SOURCE)
            + ".SH NAME\npasta \\- user-mode networking for network namespaces (passt-sep)\n"
            + ".SH SYNOPSIS\n.B pasta\n[\\fIOPTION\\fR]... [\\fICOMMAND\\fR [\\fIARG\\fR]...]\n"
            + ".br\n.B pasta\n[\\fIOPTION\\fR]... \\fIPID\\fR\n"
            + ".br\n.B pasta\n[\\fIOPTION\\fR]... \\fB\\-\\-netns\\fR \\fIPATH\\fR|\\fINAME\\fR\n"
            + ".SH DESCRIPTION\n"
            + para("""
B<pasta> connects a network namespace to the host's network without any privilege. It
creates a tap device in the namespace, answers ARP, NDP, DHCP and DHCPv6 there, and carries
the namespace's TCP, UDP and ICMP echo traffic over ordinary sockets of the host. Traffic
between the two loopbacks is spliced from socket to socket and never crosses the tap.

Given a command, B<pasta> runs it in new user and network namespaces and exits with its
status (the user's shell when nothing is given). Given a I<PID>, or B<--netns>, it attaches to
that process's or that path's namespace and goes into the background once the namespace is
set up.

This is passt-sep's B<pasta>: the same command line as pasta, run as two processes. A
parent sets up, creates the sockets the namespace's traffic needs after checking each
request, and supervises; a worker, in namespaces of its own with an empty root, no
capabilities and a seccomp allow-list, translates the traffic.""")
            + ".SH OPTIONS\n" + "".join(options_of(PASTA))
            + wide
            + _common_tail("pasta")
            + ".SH EXAMPLES\n"
            + ".PP\n.nf\n.RS\n$ pasta \\-\\-config\\-net \\-\\- ip address show\n"
            + "$ pasta \\-\\-config\\-net \\-t 8080 \\-\\-netns /run/netns/web\n"
            + ".RE\n.fi\n"
            + ".SH SEE ALSO\n\\fBpasst\\fR(1), \\fBpasst\\-sep\\-slirp4netns\\fR(1), "
            + "\\fBpodman\\fR(1), \\fBip\\-netns\\fR(8)\n")


def _common_tail(mode: str) -> str:
    return (".SH EXIT STATUS\n"
            + para(("0 once set-up is done (in the background) or when the run ends; "
                    "with a command, that command's status. " if mode == PASTA else
                    "0 once set-up is done (in the background) or when the run ends. ")
                   + "1 for a bad option, with one line naming it, or when set-up fails.")
            + ".SH NOTES\n"
            + para("Options follow passt's: long options may be abbreviated, short flags "
                   "clustered, values attached. What a repeated option does follows passt, "
                   "option by option: a later value replaces an earlier one, is added to it, "
                   "or the repeat is refused.\n\n"
                   "The project's docs/options.md says what each option does in passt-sep, "
                   "and where it differs from passt."))


def qrap_page() -> str:
    return (HEAD.format(name="QRAP", date=DATE, source=SOURCE)
            + ".SH NAME\nqrap \\- run an older qemu on a passt socket (passt-sep)\n"
            + ".SH SYNOPSIS\n.B qrap\n[\\fB\\-\\-socket\\fR \\fIPATH\\fR] \\fIFDNUM\\fR "
            + "\\fIQEMU_CMD\\fR [\\fIARG\\fR]...\n"
            + ".SH DESCRIPTION\n"
            + para("""
qemu before 7.2 cannot connect to a UNIX socket for its network back end, but it can use an
already connected one. B<qrap> connects to B<passt>(1), makes sure it is the client that
instance serves (it sends one ARP request and waits up to a second for a frame back), puts the
connection on file descriptor I<FDNUM> (3 or more) and executes I<QEMU_CMD> with its
arguments, which inherits it.

B<qrap> does not edit qemu's arguments: give qemu the socket yourself, as
B<-netdev socket,id=n,fd=>I<FDNUM> (with a B<-device> using it) or
B<-net socket,fd=>I<FDNUM>.""")
            + ".SH OPTIONS\n"
            + item(["--socket"], "PATH", "Connect to I<PATH>. Default: try "
                   "/tmp/passt_1.socket up to /tmp/passt_99.socket, in order, and take the "
                   "first one that answers.")
            + ".SH EXIT STATUS\n"
            + para("On success B<qrap> becomes qemu. 1 with one line when no socket answers, "
                   "the arguments are wrong, or qemu cannot be executed.")
            + ".SH EXAMPLES\n"
            + ".PP\n.nf\n.RS\n$ passt\n$ qrap 5 qemu\\-system\\-x86_64 ... "
            + "\\-device virtio\\-net\\-pci,netdev=n \\-netdev socket,id=n,fd=5\n.RE\n.fi\n"
            + ".SH SEE ALSO\n\\fBpasst\\fR(1), \\fBqemu\\fR(1)\n")


# The slirp4netns front end's options: long name -> (short, value, text).
SLIRP: dict[str, tuple[str | None, str | None, str]] = {
    "configure": ("c", None, "Bring the tap device up with the guest address (the network "
                             "address + 100, 10.0.2.100 by default), the default route and "
                             "the MTU, and bring up the loopback."),
    "exit-fd": ("e", "FD", "Exit when I<FD> becomes readable or is closed (a poll event on "
                           "it)."),
    "ready-fd": ("r", "FD", "Write \"1\" to I<FD> and close it once the namespace is set up and "
                            "the API socket listens."),
    "mtu": ("m", "MTU", "MTU of the tap device and what the guest is told (default 1500, at "
                        "most 65521)."),
    "enable-ipv6": ("6", None, "Give the guest IPv6 as well: fd00::/64, gateway fd00::2, "
                               "resolver fd00::3."),
    "api-socket": ("a", "PATH", "Serve slirp4netns's JSON API on the UNIX socket I<PATH>: "
                                "B<add_hostfwd>, B<list_hostfwd>, B<remove_hostfwd>."),
    "cidr": (None, "CIDR", "The guest's IPv4 network (default 10.0.2.0/24, prefix 1 to 25): "
                           "gateway at +2, resolver at +3, guest at +100."),
    "disable-host-loopback": (None, None, "The gateway no longer leads to the host's "
                                          "loopback: the guest cannot reach 127.0.0.1 of the "
                                          "host. B<--no-host-loopback> is the older "
                                          "spelling."),
    "no-host-loopback": (None, None, "Older spelling of B<--disable-host-loopback>."),
    "netns-type": (None, "TYPE", "What the operand names: I<pid> (default), a process whose "
                                 "network namespace to join, or I<path>, a namespace file."),
    "userns-path": (None, "PATH", "The user namespace to join with the network namespace."),
    "enable-sandbox": (None, None, "Accepted: passt-sep always sandboxes the process that "
                                   "handles the traffic (namespaces, an empty root, no "
                                   "capabilities). B<--create-sandbox> is the older "
                                   "spelling."),
    "create-sandbox": (None, None, "Older spelling of B<--enable-sandbox>."),
    "enable-seccomp": (None, None, "Accepted: passt-sep always loads its seccomp "
                                   "allow-lists."),
    "outbound-addr": (None, "ADDR|IF", "Source address (or the address of interface I<IF>) "
                                      "of the guest's IPv4 flows on the host; an IPv6 "
                                      "address sets the IPv6 one."),
    "outbound-addr6": (None, "ADDR|IF", "The same for IPv6."),
    "disable-dns": (None, None, "No resolver at the network address + 3."),
    "macaddress": (None, "MAC", "MAC address of the tap device (with B<--configure> only)."),
    "target-type": (None, "TYPE", "Only I<netns> is supported."),
    "help": ("h", None, "Print a summary of the options and exit 0."),
    "version": ("v", None, "Print the version and exit 0."),
}


def slirp_page() -> str:
    items = []
    for long, (short, value, text) in SLIRP.items():
        names = ([f"-{short}"] if short else []) + [f"--{long}"]
        items.append(item(names, value, text))
    return (HEAD.format(name="PASST-SEP-SLIRP4NETNS", date=DATE, source=SOURCE)
            + ".SH NAME\npasst\\-sep\\-slirp4netns \\- slirp4netns's command line on "
            + "passt-sep's pasta\n"
            + ".SH SYNOPSIS\n.B slirp4netns\n[\\fIOPTION\\fR]... \\fIPID\\fR|\\fIPATH\\fR "
            + "[\\fITAPNAME\\fR]\n.br\n.B passt\\-sep slirp4netns\n[\\fIOPTION\\fR]... "
            + "\\fIPID\\fR|\\fIPATH\\fR [\\fITAPNAME\\fR]\n"
            + ".SH DESCRIPTION\n"
            + para("""
The B<slirp4netns> console script of passt-sep takes the command line of slirp4netns 1.x, as
rootless podman 4 and rootlesskit pass it, and serves the namespace with B<pasta>(1)'s
privilege-separated engine. The network looks as slirp4netns makes it: the guest at the
network address + 100 (10.0.2.100/24), the gateway at + 2 (10.0.2.2), which leads to the
host's loopback unless B<--disable-host-loopback> is given, a resolver at + 3 (10.0.2.3),
and with B<--enable-ipv6> fd00::/64.

The operand is a process whose network namespace is joined (or, with B<--netns-type=path>,
a namespace file); I<TAPNAME> is the tap device to create there (default tap0).

This page is passt-sep's own; the real slirp4netns keeps its B<slirp4netns>(1) page.""")
            + ".SH OPTIONS\n" + "".join(items)
            + ".SH API\n"
            + para("""
With B<--api-socket>, each connection carries one JSON request and gets one JSON reply, as
with slirp4netns: B<{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr":
"0.0.0.0", "host_port": 8080, "guest_port": 80}}> returns the new rule's B<id>;
B<list_hostfwd> lists the rules; B<remove_hostfwd> with B<{"id": N}> removes one. Ports are
bound by the privileged parent, which also serves the API.""")
            + ".SH EXIT STATUS\n"
            + para("0 when told to exit (B<--exit-fd>, SIGTERM) or when the namespace goes; "
                   "1 for a bad option, with one line naming it, or when set-up fails.")
            + ".SH SEE ALSO\n\\fBpasta\\fR(1), \\fBslirp4netns\\fR(1), \\fBpodman\\fR(1), "
            + "\\fBrootlesskit\\fR(1)\n")


PAGES = {
    "passt.1": passt_page,
    "pasta.1": pasta_page,
    "qrap.1": qrap_page,
    "passt-sep-slirp4netns.1": slirp_page,
}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    MAN_DIR.mkdir(exist_ok=True)
    bad = []
    for name, make in PAGES.items():
        text = make()
        path = MAN_DIR / name
        if check:
            if not path.exists() or path.read_text() != text:
                bad.append(name)
        else:
            path.write_text(text)
    if bad:
        print(f"gen_man: out of date: {', '.join(bad)} (run scripts/gen_man.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
