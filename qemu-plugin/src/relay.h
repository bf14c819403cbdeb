// The bridge's engine, the same on both sides: local channels (QEMU connections) on one
// hand, a transport connection on the other, one reader thread per channel (QEMU -> peer)
// and one receiver thread per queue (peer -> QEMU). See bridge_wire.h for the messages.
// relay.cc: the session (set-up, receivers, placement slots offered, the end);
// relay_outbound.cc: the reader threads (DATA, or PAGES through the page sender).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "local_channel.h"
#include "packet_codec.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/migration/page_sender.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/pipeline/compression_governor.h"
#include "ramshift/qemu/bridge.h"
#include "ramshift/qemu/bridge_wire.h"

namespace ramshift::qemu {

class Relay {
 public:
  enum class Side { kSource, kDest };
  // Destination: opens the QEMU connection for channel `id` (called in channel order).
  using Opener = std::function<Result<LocalChannel>(uint16_t id)>;

  Relay(transport::Connection& conn, Side side, const BridgeConfig& config,
        BridgeProgress* progress, Opener opener = {});
  ~Relay();  // stops and joins every thread
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Exchanges HELLO on queue 0 (before start()).
  Status handshake(std::chrono::milliseconds timeout);
  void start();  // the per-queue receiver threads
  // Source: a connection QEMU opened; announces it and starts relaying it.
  Status add_channel(LocalChannel channel);
  // Waits until every channel has closed in both directions (ok) or the relay failed.
  // `deadline_hit` is polled while waiting for the first channel only.
  Status wait(const std::function<bool()>& give_up_waiting_for_first = {});
  // Fails the relay: every QEMU connection is cut, the peer told why (unless it told us).
  void fail(const Status& why, bool tell_peer);
  bool finished() const;
  // Flushes and closes the transport, joins the threads.
  void stop();

  void fill_report(BridgeReport& r) const;
  std::chrono::steady_clock::time_point first_open() const { return first_open_; }

 private:
  struct Channel;
  // A channel's reassembly slots (rdma:// placement): the destination's registered for
  // remote writes, and the source's registered staging copy of them, slot for slot.
  struct SlotPool {
    SlotKeys keys;                // ready when keys.slots > 0
    MappedMemory memory;          // slots * slot_bytes
    std::vector<bool> in_flight;  // source: written, not yet RELEASEd
  };
  Status post(uint32_t queue, BridgeKind kind, uint16_t channel, std::span<const std::byte> body,
              bool even_if_failed = false, uint8_t flags = 0, uint32_t aux = 0);
  Status post_segments(uint32_t queue, std::span<const std::span<const std::byte>> segs,
                       bool even_if_failed);
  // Caller holds send_mu_[queue].
  Status post_segments_locked(uint32_t queue, std::span<const std::span<const std::byte>> segs,
                              bool even_if_failed);
  // Source: a free slot of channel `id` for a packet of `bytes` (waiting for a RELEASE if
  // all are in flight), or -1 when the channel has no slots (yet) or the packet is too big.
  Result<int> acquire_slot(uint16_t id, size_t bytes);
  // Source: sends one re-encoded multifd packet (`body`, the encoder's gather list) as
  // PAGES; with `slot` >= 0 its placed pages first go into that slot by one-sided writes.
  Status send_pages(Channel* c, int slot, const MultifdPacket& k,
                    std::span<const std::span<const std::byte>> body);
  // Counts what a send put on the wire, or names the error's end (the peer bridge).
  Status sent(Status st, uint64_t bytes);
  Status offer_slots(uint16_t id);                                 // destination, on OPEN
  Status take_keys(uint16_t id, std::span<const std::byte> body);  // source
  Status take_release(uint16_t id, uint32_t slot);                 // source
  Channel* open_channel(uint16_t id, LocalChannel local);
  // Reads what this side's QEMU sent on a channel; errors say "source/destination QEMU".
  Result<size_t> read_qemu(Channel* c, std::span<std::byte> buf);
  void reader_loop(Channel* c);
  Status relay_passthrough(Channel* c, std::vector<std::byte>& buf, size_t have);
  // Waits until every message accepted on `queue` has left this process (the transport may
  // keep the tail of a partly written one until the next send).
  Status push_out(uint32_t queue);
  Status relay_multifd(Channel* c, std::vector<std::byte>& buf, size_t have);
  void receiver_loop(uint32_t queue);
  Status handle(uint32_t queue, std::span<const std::byte> message);
  Status handle_open(uint16_t id);
  Status deliver(Channel* c, std::span<const std::byte> bytes);
  void mark_done_locked();
  bool queue_finished(uint32_t queue) const;

  transport::Connection& conn_;
  Side side_;
  BridgeConfig config_;
  BridgeProgress* progress_;
  Opener opener_;
  bool peer_takes_pages_ = false;
  bool place_ = false;                            // both HELLOs offered placement (rdma://)
  std::vector<std::unique_ptr<SlotPool>> pools_;  // index = channel; under mu_
  size_t cache_bytes_;                            // per channel, the source's figure on both sides
  size_t max_chunk_;
  pipeline::CompressionGovernor governor_;

  std::vector<std::unique_ptr<std::mutex>> send_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Channel>> channels_;  // index = id
  uint16_t next_open_ = 0;
  bool done_ = false;
  bool failed_flag_ = false;
  bool error_posting_ = false;  // fail() is still sending the peer its ERROR
  std::atomic<bool> failed_{false};
  std::atomic<bool> stopping_{false};
  Status failure_;
  std::chrono::steady_clock::time_point first_open_{};
  std::chrono::steady_clock::time_point last_close_{};
  std::atomic<uint64_t> wire_bytes_{0};
  std::atomic<bool> qemu_closed_early_{false};  // see BridgeReport::qemu_closed_early
  std::vector<std::thread> receivers_;
};

// What a channel carries, from its first bytes: "multifd", "main" (QEMU's main stream) or
// "other".
std::string channel_kind(uint16_t id, std::span<const std::byte> first);

// One QEMU connection and its two directions.
struct Relay::Channel {
  uint16_t id = 0;
  LocalChannel local;
  std::thread reader;
  // QEMU on this side -> peer (the reader thread's).
  uint64_t bytes_out = 0;
  pipeline::StreamHash hash_out;
  bool out_closed = false;  // under mu_
  // peer -> QEMU on this side (queue `id`'s receiver thread's).
  uint64_t bytes_in = 0;
  pipeline::StreamHash hash_in;
  bool in_closed = false;  // under mu_
  std::string kind;
  std::string mode = "passthrough";
  std::string note;
  uint64_t packets = 0;
  uint64_t qemu_zero_pages = 0;
  std::unique_ptr<PacketEncoder> encoder;
  std::unique_ptr<PacketDecoder> decoder;
  std::unique_ptr<migration::PageSender> sender;  // PAGES, made on the first packet
  explicit Channel(LocalChannel l) : local(std::move(l)) {}
};

}  // namespace ramshift::qemu
