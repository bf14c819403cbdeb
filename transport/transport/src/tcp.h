// tcp backend: one TCP connection per queue, each message prefixed by a u32 length.
#pragma once

#include <memory>

#include "ramshift/transport/transport.h"

namespace ramshift::transport::tcp {

Result<std::unique_ptr<Listener>> listen(const Uri& uri, const TransportOptions& options);
Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues,
                                            const TransportOptions& options);

}  // namespace ramshift::transport::tcp
