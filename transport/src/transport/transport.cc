// Scheme dispatch: which backend serves a URI in this build.
#include "ramshift/transport/transport.h"

#include <fmt/format.h>

#include "loopback.h"
#include "tcp.h"

namespace ramshift::transport {
namespace {
Status not_built(const Uri& uri) {
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("transport '{}' is not available in this build of ramshift "
                            "(its backend was not compiled in); use tcp://HOST:PORT",
                            uri.scheme));
}
}  // namespace

Result<std::unique_ptr<Listener>> listen(const Uri& uri, const TransportOptions&) {
  if (uri.scheme == "tcp") return tcp::listen(uri);
  if (uri.scheme == "loopback") return loopback::listen(uri);
  return not_built(uri);
}

Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues,
                                            const TransportOptions& options) {
  if (uri.scheme == "tcp") return tcp::connect(uri, queues, options);
  if (uri.scheme == "loopback") return loopback::connect(uri, queues);
  return not_built(uri);
}

}  // namespace ramshift::transport
