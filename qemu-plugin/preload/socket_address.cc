#include "socket_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace ramshift::qemu::preload {

std::string socket_ipv4(int fd, SocketEnd end) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if ((end == SocketEnd::kLocal ? getsockname(fd, sa, &len) : getpeername(fd, sa, &len)) != 0)
    return {};
  in_addr v4{};
  if (ss.ss_family == AF_INET) {
    v4 = reinterpret_cast<sockaddr_in*>(&ss)->sin_addr;
  } else if (ss.ss_family == AF_INET6) {
    const in6_addr& v6 = reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr;
    if (!IN6_IS_ADDR_V4MAPPED(&v6)) return {};
    std::memcpy(&v4, v6.s6_addr + 12, sizeof v4);
  } else {
    return {};
  }
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &v4, text, sizeof text);
  return text;
}

}  // namespace ramshift::qemu::preload
