"""Capture one interface into a pcap, headers only (``--snaplen`` bytes per frame).

Run inside a namespace by the netns backend (``pcap=True``). Frames are read from an AF_PACKET
socket and written with scapy's ``PcapWriter`` (Ethernet link type), flushed per frame so the
file stays valid when the run is killed. Stops on SIGTERM/SIGINT. Read the files with scapy
(``rdpcap``), tcpdump or Wireshark.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import time

ETH_P_ALL = 0x0003


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="capture")
    p.add_argument("--iface", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--snaplen", type=int, default=128, help="bytes kept per frame (0 = whole frame)")
    args = p.parse_args(argv)
    from scapy.utils import PcapWriter

    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    snaplen = args.snaplen if args.snaplen > 0 else 262144
    writer = PcapWriter(args.out, linktype=1, sync=True, snaplen=snaplen)
    writer.write_header(None)
    try:
        while not stop:
            try:
                ready, _, _ = select.select([sock], [], [], 0.2)
            except InterruptedError:
                continue
            if not ready:
                continue
            frame = sock.recv(262144)
            ts = time.time()
            sec = int(ts)
            writer.write_packet(frame[:snaplen], sec=sec, usec=int((ts - sec) * 1e6),
                                caplen=min(len(frame), snaplen), wirelen=len(frame))
    finally:
        writer.close()
        sock.close()


if __name__ == "__main__":
    main()
