// In-process loopback backend: a full transport (queues, back-pressure, disconnect) whose
// "wire" is a bounded in-memory message queue per direction. For tests and the fast path
// of the demo; it behaves like tcp as far as a caller can observe.
#pragma once

#include <memory>

#include "ramshift/transport/transport.h"

namespace ramshift::transport::loopback {

Result<std::unique_ptr<Listener>> listen(const Uri& uri);
Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues);

}  // namespace ramshift::transport::loopback
