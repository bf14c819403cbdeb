#!/usr/bin/env python3
"""A peer that speaks ramshift's tcp framing badly, for the fault matrix.

    bad_peer.py HOST PORT CASE

Connects like a real peer (or not, for `junk`), sends one kind of bad input and closes.
The cases: junk (random bytes, no queue hello), queues-then-close (a whole 2-queue
connection that closes before any frame), message-too-long (a 4 GiB tcp message
announced), message-cut (1000 bytes announced, 10 sent, closed); then whole tcp messages
that are bad frames: bad-magic, short-header (8 of 16 header bytes), short-body (a header
announcing 1000 body bytes, 10 there), bad-crc, huge-length (a header announcing 4 GiB),
bad-hello (a HELLO whose body is garbage with a correct CRC).
Formats: transport/transport/src/tcp_socket.h (queue hello), tcp.h (u32 length per
message), transport/wire (frames).
"""
import os
import random
import socket
import struct
import sys

QUEUE_HELLO_MAGIC = 0x51545352  # "RSTQ"
FRAME_MAGIC = 0x46485352  # "RSHF"
HELLO = 1


def crc32c(data: bytes) -> int:
    """The frames' CRC32C as ISA-L's crc32_iscsi(data, len, 0) computes it: seed 0, no
    final inversion (pipeline/checksum.h)."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc


def header(ftype: int, length: int, crc: int) -> bytes:
    return struct.pack("<IBBHII", FRAME_MAGIC, ftype, 0, 0, length, crc)


def connect_queues(host: str, port: int, count: int = 2):
    nonce = random.getrandbits(64)
    socks = []
    for q in range(count):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(struct.pack("<IHHHHQI", QUEUE_HELLO_MAGIC, 1, q, count, 0, nonce, 0))
        socks.append(s)
    return socks


def main() -> int:
    host, port, case = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if case == "junk":
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(os.urandom(4096))
        s.close()
        return 0
    socks = connect_queues(host, port)
    q0 = socks[0]
    body = os.urandom(40)

    def message(data: bytes) -> bytes:  # the tcp backend's u32 length prefix
        return struct.pack("<I", len(data)) + data

    payload = {
        "queues-then-close": b"",
        # Broken at the transport: a message longer than allowed, a message cut short.
        "message-too-long": struct.pack("<I", 0xFFFFFFFF) + body,
        "message-cut": struct.pack("<I", 1000) + body[:10],
        # Whole messages that are not valid frames.
        "bad-magic": message(os.urandom(16) + body),
        "short-header": message(header(HELLO, len(body), crc32c(body))[:8]),
        "short-body": message(header(HELLO, 1000, 0) + body[:10]),
        "bad-crc": message(header(HELLO, len(body), crc32c(body) ^ 1) + body),
        "huge-length": message(header(HELLO, 0xFFFFFFFF, 0) + body),
        "bad-hello": message(header(HELLO, len(body), crc32c(body)) + body),
    }.get(case)
    q0.sendall(payload)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
