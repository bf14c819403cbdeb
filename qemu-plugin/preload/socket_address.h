// The IPv4 address at one end of a connected TCP socket, as the library needs it to find the
// RDMA device that holds it.
#pragma once

#include <string>

namespace ramshift::qemu::preload {

enum class SocketEnd { kLocal, kPeer };

// Dotted IPv4 text of `end` of `fd`: an AF_INET address, or an IPv4-mapped AF_INET6 one
// (::ffff:a.b.c.d, which a socket accepted on a dual-stack [::] listener has: libvirt's
// destination QEMU listens there). Empty for a true IPv6 address or a socket with none.
std::string socket_ipv4(int fd, SocketEnd end);

}  // namespace ramshift::qemu::preload
