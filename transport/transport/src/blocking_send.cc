#include "ramshift/transport/blocking_send.h"

#include <fmt/format.h>

#include <algorithm>

namespace ramshift::transport {
namespace {

using Clock = std::chrono::steady_clock;

// `attempt` posts once; the loop turns kWouldBlock into waits.
template <typename Attempt>
Status retry_while_full(Connection& conn, uint32_t queue, const SendWait& wait, Attempt&& attempt) {
  Status s = attempt();
  if (s.code() != ErrorCode::kWouldBlock) return s;  // the common case: no clock read
  const bool limited = wait.timeout != Millis::max();
  auto deadline = limited ? Clock::now() + wait.timeout : Clock::time_point::max();
  for (;;) {
    if (wait.abort && wait.abort->load(std::memory_order_relaxed))
      return Status(ErrorCode::kCancelled, "cancelled");
    if (wait.while_blocked) RS_RETURN_IF_ERROR(wait.while_blocked());
    const auto now = Clock::now();
    if (now >= deadline)
      return Status(ErrorCode::kTimeout,
                    fmt::format("queue {} stayed full for {} ms", queue, wait.timeout.count()));
    Millis slice = wait.slice;
    if (limited) slice = std::min(slice, std::chrono::ceil<Millis>(deadline - now));
    Status w = conn.wait_writable(queue, slice);
    if (!w && w.code() != ErrorCode::kTimeout) return w;
    if (w && limited) deadline = Clock::now() + wait.timeout;  // room came: count afresh
    s = attempt();
    if (s.code() != ErrorCode::kWouldBlock) return s;
  }
}

}  // namespace

Status send_blocking(Connection& conn, uint32_t queue, std::span<const ConstBuffer> segments,
                     const SendWait& wait) {
  return retry_while_full(conn, queue, wait, [&] { return conn.post_send(queue, segments); });
}

Status write_blocking(Connection& conn, uint32_t queue, std::span<const RemoteWrite> writes,
                      const SendWait& wait) {
  return retry_while_full(conn, queue, wait, [&] { return conn.post_write(queue, writes); });
}

}  // namespace ramshift::transport
