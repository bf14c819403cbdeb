#include "frame_io.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace ramshift::migration {

Result<uint64_t> send_frame(transport::Connection& conn, uint32_t queue, wire::FrameType type,
                            std::span<const std::byte> body, std::chrono::milliseconds timeout,
                            const std::atomic<bool>* abort) {
  transport::ConstBuffer one[1] = {body};
  return send_frame(conn, queue, type, std::span<const transport::ConstBuffer>(one), timeout,
                    abort);
}

Result<uint64_t> send_frame(transport::Connection& conn, uint32_t queue, wire::FrameType type,
                            std::span<const transport::ConstBuffer> body_segments,
                            std::chrono::milliseconds timeout, const std::atomic<bool>* abort) {
  auto header = wire::frame_header(type, body_segments);
  // Why 1040: a batch of up to 1024 pages can be as many runs, plus header and entries.
  constexpr size_t kMaxSegments = 1040;
  if (body_segments.size() + 1 > kMaxSegments)
    return Status(ErrorCode::kInternal, "frame has too many segments");
  std::array<transport::ConstBuffer, kMaxSegments> segs;
  segs[0] = header;
  std::copy(body_segments.begin(), body_segments.end(), segs.begin() + 1);
  size_t body_bytes = 0;
  for (auto s : body_segments) body_bytes += s.size();
  std::span<const transport::ConstBuffer> all(segs.data(), body_segments.size() + 1);
  transport::SendWait wait;
  wait.timeout = timeout;
  wait.abort = abort;  // noticed within a slice (100 ms)
  Status s = transport::send_blocking(conn, queue, all, wait);
  if (s) return uint64_t{header.size() + body_bytes};
  if (s.code() == ErrorCode::kTimeout)
    return Status(ErrorCode::kTimeout, fmt::format("peer did not accept a {} frame for {} ms",
                                                   wire::frame_type_name(type), timeout.count()));
  return s;
}

Result<wire::FrameView> receive_frame(transport::Connection& conn, uint32_t queue,
                                      std::chrono::milliseconds timeout) {
  transport::ConstBuffer msg[1];
  RS_ASSIGN_OR_RETURN(size_t n, conn.poll(queue, msg, timeout));
  if (n == 0)
    return Status(ErrorCode::kTimeout, fmt::format("no message within {} ms", timeout.count()));
  return wire::parse_frame(msg[0]);
}

Status peer_error(std::span<const std::byte> body, const char* peer) {
  auto e = wire::decode_error(body);
  if (!e) return e.status().with_context(fmt::format("{} sent an unreadable error", peer));
  return Status(e->code, fmt::format("{}: {}", peer, e->message));
}

void send_error_frame(transport::Connection& conn, const Status& status) {
  wire::ErrorMessage m{status.code(), status.message()};
  if (m.code == ErrorCode::kOk) m.code = ErrorCode::kInternal;
  auto body = wire::encode(m);
  (void)send_frame(conn, 0, wire::FrameType::kError, body, std::chrono::milliseconds(1000));
  (void)conn.flush(0, std::chrono::milliseconds(1000));
}

}  // namespace ramshift::migration
