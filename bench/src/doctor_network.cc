// `ramshift doctor`'s network checks: TCP buffer ceilings, the route to a peer (interface,
// MTU) and its link speed. Read from the kernel (procfs, sysfs, a connected UDP socket);
// nothing is sent.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "doctor_checks.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/base/units.h"

namespace ramshift::bench {
namespace {

// The largest (third) value of a "min default max" sysctl such as net.ipv4.tcp_rmem.
uint64_t sysctl_max(const char* path) {
  std::ifstream in(path);
  uint64_t a = 0, b = 0, c = 0;
  in >> a >> b >> c;
  return c != 0 ? c : a;
}

struct Route {
  std::string interface;
  std::string local_address;
  int mtu = 0;
};

// The interface and MTU the kernel would use to reach host:port: a UDP socket connected
// there (connect() on UDP sends nothing) names the local address; getifaddrs maps it to
// its interface.
Result<Route> route_to(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port == 0 ? 9 : port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0)
    return Status(ErrorCode::kUnreachable,
                  fmt::format("cannot resolve {}: {}", host, gai_strerror(rc)));
  UniqueFd fd(::socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const int family = res->ai_family;
  const int rc = fd.valid() ? ::connect(fd.get(), res->ai_addr, res->ai_addrlen) : -1;
  freeaddrinfo(res);
  if (rc != 0) return errno_status(ErrorCode::kUnreachable, "no route to " + host, errno);
  Route r;
  socklen_t len = sizeof r.mtu;
  if (family == AF_INET)
    getsockopt(fd.get(), IPPROTO_IP, IP_MTU, &r.mtu, &len);
  else
    getsockopt(fd.get(), IPPROTO_IPV6, IPV6_MTU, &r.mtu, &len);
  sockaddr_storage local{};
  socklen_t local_len = sizeof local;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &local_len);
  char text[INET6_ADDRSTRLEN] = {};
  const void* addr =
      family == AF_INET
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr)
          : &reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr;
  inet_ntop(family, addr, text, sizeof text);
  r.local_address = text;
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) == 0) {
    for (ifaddrs* i = ifs; i; i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != family) continue;
      const void* a =
          family == AF_INET
              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr)
              : &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr;
      const size_t n = family == AF_INET ? sizeof(in_addr) : sizeof(in6_addr);
      if (std::memcmp(a, addr, n) == 0) {
        r.interface = i->ifa_name;
        break;
      }
    }
    freeifaddrs(ifs);
  }
  return r;
}

// Link speed in Mbit/s from sysfs; 0 when the interface does not say (loopback, veth, many VMs).
uint64_t link_speed_mbps(const std::string& interface) {
  std::ifstream in("/sys/class/net/" + interface + "/speed");
  long long v = 0;
  return (in >> v) && v > 0 ? static_cast<uint64_t>(v) : 0;
}

}  // namespace

void check_network(std::vector<Check>& out, const DoctorOptions& o) {
  // tcp:// leaves buffer sizes to the kernel's autotuning, which stops at these ceilings;
  // one queue then carries at most one ceiling per round trip.
  const uint64_t rmem = sysctl_max("/proc/sys/net/ipv4/tcp_rmem");
  const uint64_t wmem = sysctl_max("/proc/sys/net/ipv4/tcp_wmem");
  const uint64_t ceiling = std::min(rmem, wmem);
  const double gbit_at_1ms = static_cast<double>(ceiling) * 8 / 1e-3 / 1e9;
  uint64_t speed = 0;
  std::string route_detail;
  if (o.peer_host.empty()) {
    out.push_back({"net.route", Verdict::kSkip,
                   "no peer given: `doctor --to URI` checks the route, MTU and link to it", ""});
  } else if (auto r = route_to(o.peer_host, o.peer_port); !r) {
    out.push_back({"net.route", Verdict::kFail, r.status().message(),
                   "check the address, the routing table (ip route get HOST) and DNS"});
  } else {
    speed = link_speed_mbps(r->interface);
    route_detail = fmt::format("{} via {} (local {}), MTU {}", o.peer_host,
                               r->interface.empty() ? "?" : r->interface, r->local_address, r->mtu);
    // Jumbo frames cut the per-packet work of every byte; it matters from 10 Gbit/s on.
    const bool small_mtu = speed >= 10000 && r->mtu > 0 && r->mtu < 9000;
    out.push_back({"net.route", small_mtu ? Verdict::kWarn : Verdict::kOk, route_detail,
                   small_mtu ? fmt::format("a {} Gbit/s link with MTU {}: set MTU 9000 on both "
                                           "hosts and the switch (ip link set {} mtu 9000)",
                                           speed / 1000, r->mtu, r->interface)
                             : ""});
    out.push_back({"net.link", speed ? Verdict::kOk : Verdict::kSkip,
                   speed ? fmt::format("{} runs at {} Mbit/s", r->interface, speed)
                         : fmt::format("{} does not report a link speed (loopback, veth or a "
                                       "virtual NIC)",
                                       r->interface.empty() ? "the interface" : r->interface),
                   ""});
  }
  const bool short_buffers =
      speed > 0 && gbit_at_1ms * o.queues * 1000 < static_cast<double>(speed);
  out.push_back(
      {"net.tcp_buffers", short_buffers ? Verdict::kWarn : Verdict::kOk,
       fmt::format("TCP buffers grow to {} (receive) / {} (send): a tcp:// queue carries at most "
                   "{:.1f} Gbit/s at 1 ms round trip",
                   format_bytes(rmem), format_bytes(wmem), gbit_at_1ms),
       short_buffers ? "raise the third value of net.ipv4.tcp_rmem and net.ipv4.tcp_wmem "
                       "(sysctl -w net.ipv4.tcp_rmem='4096 131072 67108864', same for tcp_wmem)"
                     : ""});
}

}  // namespace ramshift::bench
