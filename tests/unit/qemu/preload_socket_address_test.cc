// The address the in-process library offers RDMA on, read from real connected sockets: a
// dual-stack [::] listener (libvirt's destination QEMU listens there) hands the library an
// IPv4-mapped IPv6 socket, which must still name the IPv4 address.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "socket_address.h"

namespace ramshift::qemu::preload {
namespace {

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// A listener on `family`'s any-address (dual-stack for AF_INET6), a client connected to it over
// 127.0.0.1, and the accepted socket.
struct Connected {
  Fd listener{-1}, client{-1}, accepted{-1};
};

bool connect_over_loopback_v4(int family, Connected& c) {
  c.listener.fd = ::socket(family, SOCK_STREAM, 0);
  if (c.listener.fd < 0) return false;
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET6) {
    int v6only = 0;
    setsockopt(c.listener.fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_any;
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    len = sizeof *a;
  }
  if (::bind(c.listener.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      ::listen(c.listener.fd, 1) != 0 ||
      getsockname(c.listener.fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return false;
  uint16_t port = family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                     : reinterpret_cast<sockaddr_in*>(&ss)->sin_port;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = port;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  c.client.fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(c.client.fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) return false;
  c.accepted.fd = ::accept(c.listener.fd, nullptr, nullptr);
  return c.accepted.fd >= 0;
}

TEST(PreloadSocketAddress, PlainIpv4SocketNamesItsAddressAtBothEnds) {
  Connected c;
  ASSERT_TRUE(connect_over_loopback_v4(AF_INET, c));
  EXPECT_EQ(socket_ipv4(c.accepted.fd, SocketEnd::kLocal), "127.0.0.1");
  EXPECT_EQ(socket_ipv4(c.client.fd, SocketEnd::kPeer), "127.0.0.1");
}

TEST(PreloadSocketAddress, DualStackListenerAcceptsAMappedAddressThatStillNamesIpv4) {
  Connected c;
  if (!connect_over_loopback_v4(AF_INET6, c)) GTEST_SKIP() << "no IPv6 sockets on this host";
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ASSERT_EQ(getsockname(c.accepted.fd, reinterpret_cast<sockaddr*>(&ss), &len), 0);
  ASSERT_EQ(ss.ss_family, AF_INET6) << "the accepted socket should be the listener's family";
  EXPECT_EQ(socket_ipv4(c.accepted.fd, SocketEnd::kLocal), "127.0.0.1");
  EXPECT_EQ(socket_ipv4(c.accepted.fd, SocketEnd::kPeer), "127.0.0.1");
}

TEST(PreloadSocketAddress, TrueIpv6AndUnconnectedSocketsNameNothing) {
  Fd v6{::socket(AF_INET6, SOCK_STREAM, 0)};
  if (v6.fd < 0) GTEST_SKIP() << "no IPv6 sockets on this host";
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  if (::bind(v6.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    GTEST_SKIP() << "::1 is not configured here";
  EXPECT_EQ(socket_ipv4(v6.fd, SocketEnd::kLocal), "");
  EXPECT_EQ(socket_ipv4(v6.fd, SocketEnd::kPeer), "");
  EXPECT_EQ(socket_ipv4(-1, SocketEnd::kLocal), "");
}

}  // namespace
}  // namespace ramshift::qemu::preload
