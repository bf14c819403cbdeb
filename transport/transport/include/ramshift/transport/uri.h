// Transport addresses as users write them. A scheme is known when a backend registers it
// (registry.h), available or not; the forms:
//   tcp://HOST:PORT      HOST a name, IPv4, or [IPv6]; PORT 0 = any (listen only)
//   loopback://NAME      in-process (tests, demo fast path); "loopback" = loopback://default
//   rdma://HOST:PORT     verbs backend (rdma/)
//   dpdk://HOST:PORT     DPDK backend (dpdk/)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ramshift/base/status.h"

namespace ramshift::transport {

struct Uri {
  std::string scheme;  // "tcp", "loopback", "rdma", "dpdk"
  std::string host;    // without brackets; loopback: the name
  uint16_t port = 0;
  std::string to_string() const;
};

// kInvalidArgument with an example of the right form on any malformed input.
Result<Uri> parse_uri(std::string_view text);

}  // namespace ramshift::transport
