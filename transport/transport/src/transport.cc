// Scheme dispatch: which backend serves a URI in this build.
#include "ramshift/transport/transport.h"

#include <fmt/format.h>

#include "loopback.h"
#include "tcp.h"
#ifdef RAMSHIFT_HAVE_RDMA
#include "host_limits.h"  // rdma/src
#include "rdma.h"         // rdma/src: the verbs backend, when this build carries it
#endif

namespace ramshift::transport {
namespace {
Status not_built(const Uri& uri) {
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("transport '{}' is not available in this build of ramshift "
                            "(its backend was not compiled in); use tcp://HOST:PORT",
                            uri.scheme));
}
}  // namespace

Status no_remote_writes(const std::string& transport_name) {
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("the {} transport has no one-sided writes (zero_copy_write is off)",
                            transport_name));
}

Result<std::string> rdma_device_address() {
#ifdef RAMSHIFT_HAVE_RDMA
  return rdma::device_address();
#else
  return not_built(Uri{"rdma", "", 0});
#endif
}

Result<std::vector<RdmaDeviceInfo>> rdma_devices() {
#ifdef RAMSHIFT_HAVE_RDMA
  return rdma::describe_devices();
#else
  return not_built(Uri{"rdma", "", 0});
#endif
}

Result<std::unique_ptr<Listener>> listen(const Uri& uri, const TransportOptions& options) {
  if (uri.scheme == "tcp") return tcp::listen(uri);
  if (uri.scheme == "loopback") return loopback::listen(uri);
#ifdef RAMSHIFT_HAVE_RDMA
  if (uri.scheme == "rdma") return rdma::listen(uri, options);
#else
  (void)options;
#endif
  return not_built(uri);
}

Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues,
                                            const TransportOptions& options) {
  if (uri.scheme == "tcp") return tcp::connect(uri, queues, options);
  if (uri.scheme == "loopback") return loopback::connect(uri, queues);
#ifdef RAMSHIFT_HAVE_RDMA
  if (uri.scheme == "rdma") return rdma::connect(uri, queues, options);
#endif
  return not_built(uri);
}

Status RemoteWriter::post() {
  for (;;) {
    Status s = conn_.post_write(queue_, std::span(pending_, count_));
    if (s.code() != ErrorCode::kWouldBlock) {
      count_ = 0;
      return s;
    }
    if (abort_ && abort_->load()) return Status(ErrorCode::kCancelled, "cancelled");
    RS_RETURN_IF_ERROR(conn_.wait_writable(queue_, wait_));
  }
}

}  // namespace ramshift::transport
