// One queue's page sender: the step every page path shares once a batch is encoded. Its
// placed runs (pipeline::Placement, raw pages the encoder left out of the batch) go first,
// by one-sided writes into the peer's memory, then the batch goes as one message behind
// them, both through back-pressure. The engine (page batches), `ramshift bench` and the
// QEMU bridge (multifd packets) each say only where a run lands (a PlacementMap) and what
// header leads the message.
//
// Why here: it needs the pipeline (placements), the wire (headers are built by callers
// but the ordering rule is the protocol's) and the transport contract; migration is the
// lowest layer that sees all three, and bench/ and qemu-plugin/ link it.
//
// Ordering: the writes are posted on the same queue before the message, so when the peer
// receives the message the placed bytes have landed (transport.h, post_write).
// Not thread-safe: one sender per queue thread (or under the caller's lock of the queue).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/pipeline/batch_encoder.h"
#include "ramshift/transport/blocking_send.h"
#include "ramshift/transport/transport.h"

namespace ramshift::migration {

// Where the bytes of a placed run starting `offset` bytes into it go. A one-sided write
// never crosses a registration on either side, so a map also says how far this piece
// reaches; the sender asks again for the rest.
struct PlacementPiece {
  const std::byte* local = nullptr;  // the bytes to write, in memory registered locally
  uint64_t remote_address = 0;
  uint32_t rkey = 0;
  uint64_t max_bytes = UINT64_MAX;  // of the run from `offset` on, how many fit here
};

class PlacementMap {
 public:
  virtual ~PlacementMap() = default;
  // An error (no key covers the run, say) ends the send with it.
  virtual Result<PlacementPiece> locate(const pipeline::Placement& run, uint64_t offset) = 0;
};

class PageSender {
 public:
  // `place`: how the one-sided writes wait out a full queue; `send`: the message.
  PageSender(transport::Connection& conn, uint32_t queue, transport::SendWait place,
             transport::SendWait send);

  // Writes `placed` where `map` says (none: `map` may be null), then sends `header`
  // followed by `body` as one message. Returns the bytes put on the link: placed bytes,
  // header and body.
  Result<uint64_t> send(std::span<const std::byte> header,
                        std::span<const transport::ConstBuffer> body,
                        std::span<const pipeline::Placement> placed = {},
                        PlacementMap* map = nullptr) {
    uint64_t bytes = 0;
    if (!placed.empty()) {
      if (!map) return Status(ErrorCode::kInternal, "placed pages but nowhere to place them");
      RS_ASSIGN_OR_RETURN(bytes, place(placed, *map));
    }
    RS_ASSIGN_OR_RETURN(uint64_t sent, send_message(header, body));
    return bytes + sent;
  }
  // The two halves, for a caller that acts between them (the bench stamps its latency
  // clock after the writes). place() returns the bytes written, send_message() the bytes
  // of header and body.
  Result<uint64_t> place(std::span<const pipeline::Placement> runs, PlacementMap& map);
  Result<uint64_t> send_message(std::span<const std::byte> header,
                                std::span<const transport::ConstBuffer> body);

  uint32_t queue() const { return queue_; }

 private:
  Status post_writes();

  // Why 64: the most one post_write accepts; a batch's page runs rarely need more.
  static constexpr size_t kWriteGroup = 64;
  transport::Connection& conn_;
  uint32_t queue_;
  transport::SendWait place_wait_;
  transport::SendWait send_wait_;
  std::vector<transport::ConstBuffer> segments_;  // header + body, reused per message
  transport::RemoteWrite writes_[kWriteGroup];
  size_t write_count_ = 0;
};

}  // namespace ramshift::migration
