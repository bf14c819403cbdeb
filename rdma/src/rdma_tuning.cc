#include "rdma_tuning.h"

#include <fmt/format.h>

#include <limits>

#include "ramshift/base/units.h"

namespace ramshift::transport::rdma {
namespace {

Result<uint32_t> number32(const BackendSettings& s, std::string_view name, uint32_t fallback) {
  RS_ASSIGN_OR_RETURN(uint64_t v, s.number(name, fallback));
  if (v > std::numeric_limits<uint32_t>::max())
    return Status(ErrorCode::kInvalidArgument, fmt::format("--{} {} is too large", name, v));
  return static_cast<uint32_t>(v);
}

}  // namespace

Result<RdmaTuning> tuning_from(const BackendSettings& s, ReceiveLoad load) {
  RdmaTuning t;
  if (load == ReceiveLoad::kReplies) t.slot_bytes = kReplySlotBytes;
  RS_ASSIGN_OR_RETURN(t.ring_slots, number32(s, "rdma-ring-slots", t.ring_slots));
  if (auto text = s.find("rdma-slot-size")) {
    RS_ASSIGN_OR_RETURN(uint64_t slot, parse_size(*text));
    if (slot < 4096 || slot > (8u << 20))
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("--rdma-slot-size {} is outside 4K..8M", *text));
    t.slot_bytes = static_cast<uint32_t>(slot);
  }
  RS_ASSIGN_OR_RETURN(t.send_queue_depth, number32(s, "rdma-sq-depth", t.send_queue_depth));
  RS_ASSIGN_OR_RETURN(t.signal_every, number32(s, "rdma-signal-every", t.signal_every));
  RS_ASSIGN_OR_RETURN(t.max_inline, number32(s, "rdma-inline", t.max_inline));
  RS_ASSIGN_OR_RETURN(t.ack_timeout, number32(s, "rdma-ack-timeout", t.ack_timeout));
  RS_ASSIGN_OR_RETURN(t.busy_poll, s.flag("rdma-busy-poll", t.busy_poll));
  RS_ASSIGN_OR_RETURN(t.memory_windows, s.flag("rdma-memory-windows", t.memory_windows));
  if (s.find("rdma-tos")) {
    RS_ASSIGN_OR_RETURN(uint32_t tos, number32(s, "rdma-tos", 0));
    if (tos > 255) return Status(ErrorCode::kInvalidArgument, "--rdma-tos must be 0..255");
    t.tos = static_cast<int>(tos);
  }
  if (s.find("rdma-gid-index")) {
    RS_ASSIGN_OR_RETURN(uint32_t gid, number32(s, "rdma-gid-index", 0));
    if (gid > 255) return Status(ErrorCode::kInvalidArgument, "--rdma-gid-index must be 0..255");
    t.gid_index = static_cast<int>(gid);
  }
  if (auto d = s.find("rdma-device")) t.device = std::string(*d);
  if (auto ip = s.find("rdma-source-ip")) t.source_ip = std::string(*ip);
  if (t.ring_slots < 2 || t.ring_slots > 1024)
    return Status(ErrorCode::kInvalidArgument, "--rdma-ring-slots must be 2..1024");
  if (t.send_queue_depth < 8 || t.signal_every < 1 || t.signal_every > t.send_queue_depth / 2)
    return Status(ErrorCode::kInvalidArgument,
                  "--rdma-sq-depth must be >= 8 and --rdma-signal-every 1..half of it");
  if (t.ack_timeout > 31)
    return Status(ErrorCode::kInvalidArgument, "--rdma-ack-timeout must be 0..31");
  return t;
}

}  // namespace ramshift::transport::rdma
