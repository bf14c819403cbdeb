#include "ramshift/migration/page_sender.h"

#include <algorithm>

namespace ramshift::migration {

PageSender::PageSender(transport::Connection& conn, uint32_t queue, transport::SendWait place,
                       transport::SendWait send)
    : conn_(conn), queue_(queue), place_wait_(std::move(place)), send_wait_(std::move(send)) {}

Result<uint64_t> PageSender::send_message(std::span<const std::byte> header,
                                          std::span<const transport::ConstBuffer> body) {
  uint64_t bytes = header.size();
  segments_.clear();
  if (!header.empty()) segments_.push_back(header);
  for (const auto& seg : body) {
    segments_.push_back(seg);
    bytes += seg.size();
  }
  RS_RETURN_IF_ERROR(transport::send_blocking(conn_, queue_, segments_, send_wait_));
  return bytes;
}

Result<uint64_t> PageSender::place(std::span<const pipeline::Placement> runs, PlacementMap& map) {
  write_count_ = 0;
  uint64_t bytes = 0;
  for (const auto& run : runs) {
    for (uint64_t off = 0; off < run.bytes;) {
      RS_ASSIGN_OR_RETURN(PlacementPiece piece, map.locate(run, off));
      const uint64_t len = std::min<uint64_t>(run.bytes - off, piece.max_bytes);
      if (len == 0) return Status(ErrorCode::kInternal, "placement map gave an empty piece");
      writes_[write_count_++] = {piece.local, static_cast<size_t>(len), piece.remote_address,
                                 piece.rkey};
      if (write_count_ == kWriteGroup) RS_RETURN_IF_ERROR(post_writes());
      off += len;
    }
    bytes += run.bytes;
  }
  if (write_count_ > 0) RS_RETURN_IF_ERROR(post_writes());
  return bytes;
}

Status PageSender::post_writes() {
  Status s =
      transport::write_blocking(conn_, queue_, std::span(writes_, write_count_), place_wait_);
  write_count_ = 0;
  return s;
}

}  // namespace ramshift::migration
