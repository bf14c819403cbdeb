// The bridge's outbound half: what this side's QEMU writes on a channel, read by the
// channel's reader thread and sent to the peer bridge, passed through (DATA) or, for a
// multifd channel in multifd-aware mode, re-encoded packet by packet (PAGES, placed by
// one-sided writes over rdma://). relay.cc holds the session: set-up, the receivers, the end.
#include <fmt/format.h>

#include <cstring>

#include "ramshift/base/log.h"
#include "relay.h"

namespace ramshift::qemu {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {
// Largest multifd packet re-encoded (header, offsets and pages); larger ones pass through.
constexpr size_t kMaxPacketBytes = 16u << 20;
}  // namespace

Status Relay::post_segments(uint32_t queue, std::span<const std::span<const std::byte>> segs,
                            bool even_if_failed) {
  std::lock_guard lock(*send_mu_[queue]);
  return post_segments_locked(queue, segs, even_if_failed);
}

Status Relay::post_segments_locked(uint32_t queue, std::span<const std::span<const std::byte>> segs,
                                   bool even_if_failed) {
  size_t bytes = 0;
  for (auto s : segs) bytes += s.size();
  transport::SendWait wait;
  if (even_if_failed)
    wait.timeout = 2s;  // for a last ERROR message only
  else
    wait.abort = &failed_;
  return sent(transport::send_blocking(conn_, queue, segs, wait), bytes);
}

Status Relay::sent(Status st, uint64_t bytes) {
  if (st) {
    wire_bytes_ += bytes;
    if (progress_) progress_->wire_bytes += bytes;
    return st;
  }
  if (st.code() == ErrorCode::kCancelled) return Status(ErrorCode::kCancelled, "bridge failed");
  if (st.code() == ErrorCode::kTimeout) return st;
  return st.with_context(side_ == Side::kSource ? "to the destination bridge"
                                                : "to the source bridge");
}

Status Relay::post(uint32_t queue, BridgeKind kind, uint16_t channel,
                   std::span<const std::byte> body, bool even_if_failed, uint8_t flags,
                   uint32_t aux) {
  std::byte header[kBridgeHeaderBytes];
  encode_header({kind, flags, channel, static_cast<uint32_t>(body.size()), aux}, header);
  std::span<const std::byte> segs[] = {{header, sizeof header}, body};
  return post_segments(queue, {segs, body.empty() ? 1u : 2u}, even_if_failed);
}

// --- QEMU -> peer --------------------------------------------------------------------------

Result<size_t> Relay::read_qemu(Channel* c, std::span<std::byte> buf) {
  auto n = c->local.read_some(buf);
  if (!n)
    return n.status().with_context(side_ == Side::kSource ? "source QEMU" : "destination QEMU");
  return n;
}

void Relay::reader_loop(Channel* c) {
  std::vector<std::byte> buf(max_chunk_);
  size_t have = 0;
  Status st;
  // The first four bytes tell a multifd channel from the main one.
  while (have < 4) {
    auto n = read_qemu(c, std::span(buf).subspan(have));
    if (!n) {
      st = n.status();
      break;
    }
    if (*n == 0) break;
    have += *n;
  }
  if (st) {
    c->kind = channel_kind(c->id, std::span(buf).first(have));
    // --codec none would only copy each page twice more: such channels pass through.
    if (c->kind == "multifd" && peer_takes_pages_ &&
        config_.codec.mode != pipeline::CodecMode::kNone) {
      c->mode = "multifd";
      st = relay_multifd(c, buf, have);
    } else {
      st = relay_passthrough(c, buf, have);
    }
  }
  if (!st) {
    // The destination QEMU resetting its end (it closed with our bytes unread) is the same
    // event as a write finding it closed: see deliver().
    if (side_ == Side::kDest && st.code() == ErrorCode::kDisconnected) qemu_closed_early_ = true;
    // The error names its end: this side's QEMU (read_qemu) or the peer bridge (post).
    if (st.code() != ErrorCode::kCancelled)
      fail(st.with_context(fmt::format("channel {}", c->id)), true);
    return;
  }
  std::byte body[kCloseBytes];
  encode_close({c->bytes_out, c->hash_out.digest()}, body);
  Status p = post(c->id, BridgeKind::kClose, c->id, body);
  if (!p) {
    if (p.code() != ErrorCode::kCancelled) fail(p.with_context("sending CLOSE"), false);
    return;
  }
  log::info("bridge: channel {} closed by {} QEMU after {} bytes", c->id,
            side_ == Side::kSource ? "source" : "destination", c->bytes_out);
  std::lock_guard lock(mu_);
  c->out_closed = true;
  mark_done_locked();
}

Status Relay::relay_passthrough(Channel* c, std::vector<std::byte>& buf, size_t have) {
  for (;;) {
    if (have > 0) {
      std::span<const std::byte> data(buf.data(), have);
      c->hash_out.update(data);
      c->bytes_out += have;
      if (progress_ && side_ == Side::kSource) progress_->bytes_to_dest += have;
      RS_RETURN_IF_ERROR(post(c->id, BridgeKind::kData, c->id, data));
      // Why: a request-reply protocol carried byte for byte (NBD for --copy-storage-all)
      // sends nothing more until its reply comes, so a message tail tcp:// kept back after a
      // partial write would never leave: the disk copy stalled for good with every socket
      // queue empty (tests/libvirt). A migration stream loses nothing: its next send would
      // wait for the same room.
      RS_RETURN_IF_ERROR(push_out(c->id));
    }
    RS_ASSIGN_OR_RETURN(have, read_qemu(c, buf));
    if (have == 0) return Status::ok();
  }
}

Status Relay::push_out(uint32_t queue) {
  std::lock_guard lock(*send_mu_[queue]);
  for (;;) {
    Status st = conn_.flush(queue, 100ms);
    if (st.code() != ErrorCode::kTimeout) return sent(st, 0);
    if (failed_) return Status(ErrorCode::kCancelled, "bridge failed");
  }
}

Status Relay::relay_multifd(Channel* c, std::vector<std::byte>& buf, size_t have) {
  if (!c->encoder)
    c->encoder = std::make_unique<PacketEncoder>(config_.codec, &governor_, cache_bytes_);
  size_t start = 0, end = have;
  bool init_done = false;
  size_t page_size = 0;
  auto send_raw = [&](size_t len) -> Status {
    std::span<const std::byte> data(buf.data() + start, len);
    c->hash_out.update(data);
    c->bytes_out += len;
    if (progress_) progress_->bytes_to_dest += len;
    start += len;
    return post(c->id, BridgeKind::kData, c->id, data);
  };
  auto read_more = [&](size_t need) -> Result<bool> {
    if (start > 0 && buf.size() - start < need) {  // compact
      std::memmove(buf.data(), buf.data() + start, end - start);
      end -= start;
      start = 0;
    }
    if (buf.size() - start < need) buf.resize(start + need);
    RS_ASSIGN_OR_RETURN(size_t n, read_qemu(c, std::span(buf).subspan(end)));
    end += n;
    return n > 0;
  };
  for (;;) {
    size_t avail = end - start;
    std::span<const std::byte> view(buf.data() + start, avail);
    size_t need = 0;
    if (!init_done) {
      if (avail >= kMultifdInitBytes) {
        RS_RETURN_IF_ERROR(send_raw(kMultifdInitBytes));
        init_done = true;
        continue;
      }
      need = kMultifdInitBytes;
    } else {
      ParseResult r = parse_multifd_packet(view, page_size);
      if (r.outcome == ParseOutcome::kPacket && r.packet.total_bytes() > kMaxPacketBytes) {
        r.outcome = ParseOutcome::kDoubt;
        r.doubt = fmt::format("a {}-byte packet", r.packet.total_bytes());
      }
      if (r.outcome == ParseOutcome::kDoubt) {
        c->note = "passed through from packet " + std::to_string(c->packets) + ": " + r.doubt;
        log::warn(
            "bridge: channel {}: multifd stream not recognised ({}); passing it through "
            "untouched",
            c->id, r.doubt);
        c->mode = "passthrough";
        if (avail > 0) RS_RETURN_IF_ERROR(send_raw(avail));
        buf.resize(max_chunk_);
        return relay_passthrough(c, buf, 0);
      }
      if (r.outcome == ParseOutcome::kPacket) {
        const MultifdPacket& k = r.packet;
        if (avail >= k.total_bytes()) {
          if (k.page_size) page_size = k.page_size;
          auto packet = view.first(k.total_bytes());
          c->hash_out.update(packet);
          c->bytes_out += packet.size();
          if (progress_) progress_->bytes_to_dest += packet.size();
          RS_ASSIGN_OR_RETURN(int slot, k.normal_pages > 0 ? acquire_slot(c->id, k.total_bytes())
                                                           : Result<int>(-1));
          auto segs = c->encoder->encode(k, packet, slot >= 0);
          RS_RETURN_IF_ERROR(send_pages(c, slot, k, segs));
          ++c->packets;
          c->qemu_zero_pages += k.zero_pages;
          start += k.total_bytes();
          continue;
        }
        need = k.total_bytes();
      } else {
        // Enough for the fixed part and the largest offsets table.
        need = kMultifdPacketFixedBytes + 8 * size_t{kMultifdMaxPagesAlloc};
        if (avail >= kMultifdPacketFixedBytes) need = std::max(need, avail + 1);
      }
    }
    RS_ASSIGN_OR_RETURN(bool more, read_more(need));
    if (!more) {  // end of stream, maybe mid-packet: QEMU's problem, carried verbatim
      if (end > start) RS_RETURN_IF_ERROR(send_raw(end - start));
      return Status::ok();
    }
  }
}

// --- placement, the source's side (rdma://) ----------------------------------------------

Status Relay::take_keys(uint16_t id, std::span<const std::byte> body) {
  if (side_ != Side::kSource || !place_)
    return Status(ErrorCode::kProtocol, "bridge message: KEYS without placement agreed");
  RS_ASSIGN_OR_RETURN(SlotKeys keys, decode_keys(body));
  SlotPool& pool = *pools_[id];
  {
    std::lock_guard lock(mu_);
    if (pool.keys.slots != 0)
      return Status(ErrorCode::kProtocol,
                    fmt::format("bridge message: KEYS for channel {} twice", id));
  }
  // The staging copy the writes leave from; registered like the destination's slots.
  const uint64_t bytes = uint64_t{keys.slots} * keys.slot_bytes;
  RS_ASSIGN_OR_RETURN(auto memory, MappedMemory::anonymous(bytes));
  RS_RETURN_IF_ERROR(
      conn_.register_memory(memory.bytes(), transport::MemoryAccess::kLocal).status());
  std::lock_guard lock(mu_);
  pool.memory = std::move(memory);
  pool.in_flight.assign(keys.slots, false);
  pool.keys = keys;
  cv_.notify_all();
  return Status::ok();
}

Status Relay::take_release(uint16_t id, uint32_t slot) {
  std::lock_guard lock(mu_);
  SlotPool& pool = *pools_[id];
  if (side_ != Side::kSource || slot >= pool.in_flight.size() || !pool.in_flight[slot])
    return Status(ErrorCode::kProtocol,
                  fmt::format("bridge message: RELEASE of slot {} of channel {}, which is not "
                              "in flight",
                              slot, id));
  pool.in_flight[slot] = false;
  cv_.notify_all();
  return Status::ok();
}

Result<int> Relay::acquire_slot(uint16_t id, size_t bytes) {
  std::unique_lock lock(mu_);
  SlotPool& pool = *pools_[id];
  if (!place_ || pool.keys.slots == 0 || bytes > pool.keys.slot_bytes) return -1;
  for (;;) {
    if (failed_flag_ || stopping_) return Status(ErrorCode::kCancelled, "bridge failed");
    for (size_t i = 0; i < pool.in_flight.size(); ++i)
      if (!pool.in_flight[i]) {
        pool.in_flight[i] = true;
        return static_cast<int>(i);
      }
    cv_.wait_for(lock, 100ms);
  }
}

namespace {
// Where a placed run of a multifd packet lands: its final offset in the packet, in the
// source's staging copy of slot `slot` and the destination's slot (one key each).
class SlotPlacement final : public migration::PlacementMap {
 public:
  SlotPlacement(std::byte* local_slot, uint64_t remote_slot, uint32_t rkey, size_t page_size)
      : local_(local_slot), remote_(remote_slot), rkey_(rkey), page_size_(page_size) {}
  Result<migration::PlacementPiece> locate(const pipeline::Placement& run,
                                           uint64_t offset) override {
    const size_t off = run.first_page * page_size_ + offset;
    return migration::PlacementPiece{local_ + off, remote_ + off, rkey_};
  }

 private:
  std::byte* local_;
  uint64_t remote_;
  uint32_t rkey_;
  size_t page_size_;
};
}  // namespace

Status Relay::send_pages(Channel* c, int slot, const MultifdPacket& k,
                         std::span<const std::span<const std::byte>> body) {
  std::byte header[kBridgeHeaderBytes];
  size_t body_bytes = 0;
  for (auto s : body) body_bytes += s.size();
  encode_header({BridgeKind::kPages, slot >= 0 ? kPagesPlaced : uint8_t{0}, c->id,
                 static_cast<uint32_t>(body_bytes), slot >= 0 ? static_cast<uint32_t>(slot) : 0},
                header);
  // The writes and the message that follows them go out under one lock: RC delivers them
  // in posting order, so the pages are in the slot before the message arrives.
  std::lock_guard lock(*send_mu_[c->id]);
  if (!c->sender) {
    const transport::SendWait place{30s, 100ms, &failed_, {}};
    const transport::SendWait send{transport::Millis::max(), 100ms, &failed_, {}};
    c->sender = std::make_unique<migration::PageSender>(conn_, c->id, place, send);
  }
  if (slot >= 0) {
    SlotPool& pool = *pools_[c->id];  // keys and memory are fixed once set
    const size_t base = size_t(slot) * pool.keys.slot_bytes + k.header_bytes;
    std::byte* local = pool.memory.bytes().data() + base;
    // The writes leave from registered memory: the staging copy of the slot.
    for (const pipeline::Placement& run : c->encoder->placements())
      std::memcpy(local + run.first_page * k.page_size, run.memory, run.bytes);
    SlotPlacement map(local, pool.keys.address + base, pool.keys.rkey, k.page_size);
    auto placed = c->sender->place(c->encoder->placements(), map);
    if (!placed) return placed.status();
    wire_bytes_ += *placed;
    if (progress_) progress_->wire_bytes += *placed;
  }
  return sent(c->sender->send_message(header, body).status(), kBridgeHeaderBytes + body_bytes);
}

}  // namespace ramshift::qemu
