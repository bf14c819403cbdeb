#include "relay.h"

#include <fmt/format.h>

#include <array>
#include <cstring>

#include "ramshift/base/log.h"
#include "ramshift/pipeline/checksum.h"

namespace ramshift::qemu {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {
constexpr uint32_t kQevmMagic = 0x5145564d;  // "QEVM", QEMU's main migration stream
// Reassembly slots a destination offers per channel over rdma://: one 7.2/9.x packet of
// 128 pages of 4 KiB (512 KiB plus header) fits a slot; 8 keep the link busy while QEMU
// reads the packets already delivered.
constexpr uint32_t kPlacementSlots = 8;
constexpr uint32_t kPlacementSlotBytes = 1u << 20;
}  // namespace

std::string channel_kind(uint16_t id, std::span<const std::byte> first) {
  if (is_multifd_magic(first)) return "multifd";
  if (first.size() >= 4) {
    uint32_t v;
    std::memcpy(&v, first.data(), 4);
    if (__builtin_bswap32(v) == kQevmMagic) return "main";
  }
  return id == 0 ? "main" : "other";
}

Relay::Relay(transport::Connection& conn, Side side, const BridgeConfig& config,
             BridgeProgress* progress, Opener opener)
    : conn_(conn),
      side_(side),
      config_(config),
      progress_(progress),
      opener_(std::move(opener)),
      // Room for a header in front of each DATA chunk; 1 MiB keeps syscalls and messages few.
      max_chunk_(std::min<size_t>(1u << 20, conn.capabilities().max_message - kBridgeHeaderBytes)),
      governor_(pipeline::codec_may_compress(config.codec.mode),
                config.codec.mode == pipeline::CodecMode::kZstd ||
                    config.codec.mode == pipeline::CodecMode::kXbzrleZstd) {
  cache_bytes_ = std::min<uint64_t>(config.codec.xbzrle_cache_bytes / conn.queue_count(), 1u << 30);
  for (uint32_t q = 0; q < conn.queue_count(); ++q) {
    send_mu_.push_back(std::make_unique<std::mutex>());
    pools_.push_back(std::make_unique<SlotPool>());
  }
  channels_.resize(conn.queue_count());
}

Relay::~Relay() { stop(); }

Status Relay::handshake(std::chrono::milliseconds timeout) {
  BridgeHello mine;
  mine.queues = conn_.queue_count();
  mine.cache_bytes = static_cast<uint32_t>(cache_bytes_);
  // Every destination bridge decodes PAGES; a source sends them only when configured to.
  mine.capabilities = side_ == Side::kDest || config_.multifd_aware ? kCapMultifdPages : 0;
  // Placement needs one-sided writes (rdma://); the source uses it only for PAGES.
  if (conn_.capabilities().zero_copy_write && (side_ == Side::kDest || config_.multifd_aware))
    mine.capabilities |= kCapPlacement;
  std::byte body[kHelloBytes];
  encode_hello(mine, body);
  if (side_ == Side::kSource) RS_RETURN_IF_ERROR(post(0, BridgeKind::kHello, 0, body));
  std::array<transport::ConstBuffer, 1> in;
  auto n = conn_.poll(0, in, timeout);
  if (!n || *n == 0) {
    Status why = n ? Status(ErrorCode::kTimeout, "no HELLO within the timeout") : n.status();
    return Status(why.code() == ErrorCode::kDisconnected ? ErrorCode::kProtocol : why.code(),
                  "the peer is not a ramshift qemu-bridge (" + why.message() + ")");
  }
  auto h = decode_header(in[0]);
  if (!h || h->kind != BridgeKind::kHello)
    return Status(ErrorCode::kProtocol,
                  "the peer is not a ramshift qemu-bridge (" +
                      (h ? std::string("its first message is not HELLO") : h.status().message()) +
                      ")");
  RS_ASSIGN_OR_RETURN(BridgeHello theirs, decode_hello(in[0].subspan(kBridgeHeaderBytes)));
  if (theirs.queues != conn_.queue_count())
    return Status(ErrorCode::kProtocol,
                  fmt::format("bridge HELLO: peer counts {} queues, the connection has {}",
                              theirs.queues, conn_.queue_count()));
  if (side_ == Side::kDest) cache_bytes_ = theirs.cache_bytes;
  peer_takes_pages_ = side_ == Side::kSource && config_.multifd_aware &&
                      (theirs.capabilities & kCapMultifdPages) != 0;
  place_ = (mine.capabilities & theirs.capabilities & kCapPlacement) != 0;
  if (side_ == Side::kDest) RS_RETURN_IF_ERROR(post(0, BridgeKind::kHello, 0, body));
  return Status::ok();
}

void Relay::start() {
  for (uint32_t q = 0; q < conn_.queue_count(); ++q)
    receivers_.emplace_back([this, q] { receiver_loop(q); });
}

Relay::Channel* Relay::open_channel(uint16_t id, LocalChannel local) {
  auto ch = std::make_unique<Channel>(std::move(local));
  ch->id = id;
  Channel* c = ch.get();
  {
    std::lock_guard lock(mu_);
    if (first_open_ == Clock::time_point{}) first_open_ = Clock::now();
    channels_[id] = std::move(ch);
    if (failed_flag_) c->local.abort();
  }
  if (progress_) progress_->channels++;
  c->reader = std::thread([this, c] { reader_loop(c); });
  return c;
}

Status Relay::add_channel(LocalChannel channel) {
  uint16_t id;
  {
    std::lock_guard lock(mu_);
    id = next_open_;
    if (id >= conn_.queue_count())
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("QEMU opened channel {} but the bridge carries {} (one per "
                                "queue): start the source bridge with --queues {} or more "
                                "(1 + multifd-channels)",
                                id + 1, conn_.queue_count(), id + 1));
    ++next_open_;
  }
  log::info("bridge: QEMU opened channel {}", id);
  RS_RETURN_IF_ERROR(post(id, BridgeKind::kOpen, id, {}));
  open_channel(id, std::move(channel));
  return Status::ok();
}

// --- placement, the destination's side (rdma://)
// ----------------------------------------------------------------

Status Relay::offer_slots(uint16_t id) {
  SlotPool& pool = *pools_[id];
  const uint64_t bytes = uint64_t{kPlacementSlots} * kPlacementSlotBytes;
  RS_ASSIGN_OR_RETURN(pool.memory, MappedMemory::anonymous(bytes));
  // The peer writes channel `id`'s placed pages through queue `id` only (its PageSender's),
  // so it gets that queue's key: over rdma:// with memory windows, a window bound on that
  // queue pair alone (the other queues' windows over the slots are never named to it);
  // otherwise the region's key, as for the guest memory of a migration.
  RS_ASSIGN_OR_RETURN(
      transport::MemoryKey key,
      conn_.register_memory_per_queue(pool.memory.bytes(), transport::MemoryAccess::kRemoteWrite));
  if (key.rkeys.size() != 1) return Status::ok();  // split registration: no placement
  pool.keys = {kPlacementSlots, kPlacementSlotBytes, key.address, key.rkey_at(key.address, id)};
  std::byte body[kKeysBytes];
  encode_keys(pool.keys, body);
  return post(id, BridgeKind::kKeys, id, body);
}

// --- peer -> QEMU --------------------------------------------------------------------------

void Relay::receiver_loop(uint32_t queue) {
  std::array<transport::ConstBuffer, 16> msgs;
  while (!stopping_) {
    auto n = conn_.poll(queue, msgs, 200ms);
    if (!n) {
      if (stopping_ || finished()) return;
      // The peer closes once it has every CLOSE of ours, having sent all of its own; queues
      // are not ordered among themselves, so this queue may see the end before another
      // delivered its CLOSE. It is a failure only if this queue's channel is still open.
      if (n.status().code() == ErrorCode::kDisconnected && queue_finished(queue)) return;
      if (n.status().code() == ErrorCode::kDisconnected && queue != 0) {
        // A failing peer sends ERROR on queue 0, then closes every queue: let queue 0's
        // thread report the peer's reason (it gets the ERROR before the end) rather than
        // this queue's bare disconnect, which under load can be seen first.
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, 500ms, [&] { return failed_flag_ || done_; });
      }
      if (n.status().code() == ErrorCode::kDisconnected)
        fail(Status(ErrorCode::kDisconnected,
                    "the peer bridge went away before every channel had closed"),
             false);
      else
        fail(n.status().with_context("transport"), false);
      return;
    }
    for (size_t i = 0; i < *n; ++i) {
      Status st = handle(queue, msgs[i]);
      if (!st) {
        if (st.code() != ErrorCode::kCancelled) fail(st, true);
        return;
      }
    }
  }
}

Status Relay::handle(uint32_t queue, std::span<const std::byte> m) {
  RS_ASSIGN_OR_RETURN(BridgeHeader h, decode_header(m));
  auto body = m.subspan(kBridgeHeaderBytes);
  if (h.kind == BridgeKind::kError) {
    fail(decode_error(body), false);
    return Status(ErrorCode::kCancelled, "peer failed");
  }
  if (h.kind == BridgeKind::kHello)
    return Status(ErrorCode::kProtocol, "bridge message: a second HELLO");
  if (h.channel != queue)
    return Status(ErrorCode::kProtocol,
                  fmt::format("bridge message: channel {} arrived on queue {}", h.channel, queue));
  if (h.kind == BridgeKind::kOpen) {
    if (side_ != Side::kDest || !body.empty())
      return Status(ErrorCode::kProtocol,
                    "bridge message: OPEN sent to a source bridge or with a body");
    return handle_open(h.channel);
  }
  if (h.kind == BridgeKind::kKeys) return take_keys(h.channel, body);
  if (h.kind == BridgeKind::kRelease) {
    if (!body.empty()) return Status(ErrorCode::kProtocol, "bridge message: RELEASE with a body");
    return take_release(h.channel, h.aux);
  }
  Channel* c;
  {
    std::lock_guard lock(mu_);
    c = channels_[h.channel].get();
    if (!c)
      return Status(ErrorCode::kProtocol,
                    fmt::format("bridge message: channel {} was never opened", h.channel));
    if (c->in_closed)
      return Status(ErrorCode::kProtocol,
                    fmt::format("bridge message: channel {} used after its CLOSE", h.channel));
  }
  switch (h.kind) {
    case BridgeKind::kData:
      return deliver(c, body);
    case BridgeKind::kPages: {
      if (side_ != Side::kDest)
        return Status(ErrorCode::kProtocol, "bridge message: PAGES sent to a source bridge");
      if (!c->decoder) c->decoder = std::make_unique<PacketDecoder>(cache_bytes_);
      const bool placed = h.flags & kPagesPlaced;
      SlotPool& pool = *pools_[c->id];  // only this thread and offer_slots() touch it here
      if (placed && h.aux >= pool.keys.slots)
        return Status(ErrorCode::kProtocol,
                      fmt::format("bridge message: PAGES placed in slot {} of channel {}, which "
                                  "offered {}",
                                  h.aux, c->id, pool.keys.slots));
      auto packet = placed
                        ? c->decoder->decode_in_place(
                              body, pool.memory.bytes().subspan(
                                        size_t{h.aux} * pool.keys.slot_bytes, pool.keys.slot_bytes))
                        : c->decoder->decode(body);
      if (!packet) return packet.status().with_context(fmt::format("channel {}", c->id));
      c->mode = "multifd";
      ++c->packets;
      RS_RETURN_IF_ERROR(deliver(c, *packet));
      // Delivered (QEMU's socket has the bytes): the source may write the slot again.
      return placed ? post(c->id, BridgeKind::kRelease, c->id, {}, false, 0, h.aux) : Status::ok();
    }
    case BridgeKind::kClose: {
      RS_ASSIGN_OR_RETURN(CloseInfo info, decode_close(body));
      const uint64_t delivered = c->hash_in.digest();
      if (info.bytes != c->bytes_in || info.hash != delivered)
        return Status(ErrorCode::kCorrupt,
                      fmt::format("channel {}: delivered {} bytes (XXH3 {:016x}) but the peer "
                                  "sent {} ({:016x})",
                                  c->id, c->bytes_in, delivered, info.bytes, info.hash));
      c->local.close_write();
      std::lock_guard lock(mu_);
      c->in_closed = true;
      mark_done_locked();
      return Status::ok();
    }
    default:
      return Status(ErrorCode::kProtocol, "bridge message: unexpected kind");
  }
}

Status Relay::handle_open(uint16_t id) {
  {
    // QEMU 7.2 takes the first connection as the main channel: open in the source's order.
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return next_open_ >= id || failed_flag_ || stopping_; });
    if (failed_flag_ || stopping_) return Status(ErrorCode::kCancelled, "bridge failed");
    if (next_open_ != id || channels_[id])
      return Status(ErrorCode::kProtocol,
                    fmt::format("bridge message: channel {} opened twice", id));
  }
  auto local = opener_(id);
  if (!local) return local.status().with_context(fmt::format("opening channel {}", id));
  open_channel(id, std::move(local).value());
  if (place_) {
    // Without slots the channel still works (unplaced PAGES): say why and go on.
    Status offered = offer_slots(id);
    if (!offered && offered.code() != ErrorCode::kCancelled)
      log::warn(
          "bridge: channel {}: no reassembly slots for placement ({}); pages travel in "
          "messages",
          id, offered.message());
    else if (!offered)
      return offered;
  }
  std::lock_guard lock(mu_);
  ++next_open_;
  cv_.notify_all();
  log::info("bridge: channel {} connected to the destination QEMU", id);
  return Status::ok();
}

Status Relay::deliver(Channel* c, std::span<const std::byte> bytes) {
  if (c->bytes_in == 0 && c->kind.empty()) c->kind = channel_kind(c->id, bytes);
  Status st = c->local.write_all(bytes);
  if (!st) {
    if (st.code() == ErrorCode::kCancelled) return st;
    qemu_closed_early_ = true;
    return Status(
        ErrorCode::kDisconnected,
        fmt::format("{} QEMU closed channel {} while the bridge was still writing it "
                    "({}); its migration failed or was cancelled",
                    side_ == Side::kDest ? "destination" : "source", c->id, st.message()));
  }
  c->hash_in.update(bytes);
  c->bytes_in += bytes.size();
  if (progress_ && side_ == Side::kDest) progress_->bytes_to_dest += bytes.size();
  return Status::ok();
}

// --- ending --------------------------------------------------------------------------------

void Relay::mark_done_locked() {
  bool any = false;
  for (auto& c : channels_) {
    if (!c) continue;
    any = true;
    if (!c->out_closed || !c->in_closed) return;
  }
  if (!any || done_) return;
  done_ = true;
  last_close_ = Clock::now();
  cv_.notify_all();
}

bool Relay::queue_finished(uint32_t queue) const {
  std::lock_guard lock(mu_);
  if (channels_[queue]) return channels_[queue]->in_closed;
  // No channel on this queue: another queue's receiver judges, unless there is none at all.
  for (auto& c : channels_)
    if (c) return true;
  return false;
}

bool Relay::finished() const {
  std::lock_guard lock(mu_);
  return done_ || failed_flag_;
}

void Relay::fail(const Status& why, bool tell_peer) {
  {
    std::lock_guard lock(mu_);
    if (failed_flag_ || done_) return;
    failed_flag_ = true;
    failed_ = true;
    failure_ = why;
    // wait() returns only once the ERROR below is posted: the caller then closes the
    // connection, and a close before the post would leave the peer with a bare disconnect.
    error_posting_ = tell_peer;
    for (auto& c : channels_)
      if (c) c->local.abort();
    cv_.notify_all();
  }
  log::info("bridge: failing: {}", why.message());
  if (tell_peer) {
    (void)post(0, BridgeKind::kError, 0, encode_error(why), true);
    std::lock_guard lock(mu_);
    error_posting_ = false;
    cv_.notify_all();
  }
}

Status Relay::wait(const std::function<bool()>& give_up_waiting_for_first) {
  std::unique_lock lock(mu_);
  for (;;) {
    if (done_) return Status::ok();
    if (failed_flag_ && !error_posting_) return failure_;
    if (!failed_flag_ && migration::cancel_requested(config_.cancel)) {
      lock.unlock();
      fail(config_.cancel->status(side_ == Side::kSource ? "source bridge" : "destination bridge"),
           true);
      lock.lock();
      continue;
    }
    if (first_open_ == Clock::time_point{} && give_up_waiting_for_first &&
        give_up_waiting_for_first())
      return Status(ErrorCode::kTimeout, "QEMU never opened a channel");
    cv_.wait_for(lock, 100ms);
  }
}

void Relay::stop() {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }
  if (!failed_)
    for (uint32_t q = 0; q < conn_.queue_count(); ++q) (void)conn_.flush(q, 2000ms);
  else
    (void)conn_.flush(0, 500ms);  // the ERROR message, if any
  conn_.close();
  {
    std::lock_guard lock(mu_);
    for (auto& c : channels_)
      if (c && (!c->out_closed || !c->in_closed)) c->local.abort();
  }
  for (auto& t : receivers_)
    if (t.joinable()) t.join();
  for (auto& c : channels_)
    if (c && c->reader.joinable()) c->reader.join();
}

void Relay::fill_report(BridgeReport& r) const {
  std::lock_guard lock(mu_);
  r.completed = done_ && !failed_flag_;
  r.verified = r.completed;  // every CLOSE matched byte counts and XXH3 hashes
  if (first_open_ != Clock::time_point{})
    r.total_ms =
        std::chrono::duration<double, std::milli>(
            (last_close_ == Clock::time_point{} ? Clock::now() : last_close_) - first_open_)
            .count();
  r.wire_bytes = wire_bytes_;
  r.queues = conn_.queue_count();
  for (auto& c : channels_) {
    if (!c) continue;
    ChannelReport cr;
    cr.id = c->id;
    cr.kind = c->kind.empty() ? (c->id == 0 ? "main" : "other") : c->kind;
    cr.mode = c->mode;
    cr.bytes_to_dest = side_ == Side::kSource ? c->bytes_out : c->bytes_in;
    cr.bytes_to_source = side_ == Side::kSource ? c->bytes_in : c->bytes_out;
    cr.packets = c->packets;
    cr.qemu_zero_pages = c->qemu_zero_pages;
    cr.note = c->note;
    if (c->encoder) r.pages += c->encoder->counts();
    if (c->decoder) r.pages += c->decoder->counts();
    r.guest_bytes += cr.bytes_to_dest;
    r.channels.push_back(cr);
  }
  if (!r.completed) r.error = failed_flag_ ? failure_ : Status(ErrorCode::kCancelled, "stopped");
  r.qemu_closed_early = !r.completed && qemu_closed_early_;
}

}  // namespace ramshift::qemu
