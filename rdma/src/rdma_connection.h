// An rdma:// connection: N RdmaQueues that share a protection domain, the guest memory
// registered for one-sided writes (and, during post-copy, reads), and a thread that watches the
// connection's CM events.
//
// Keys for the peer's one-sided access. register_memory hands out the memory region's own
// rkey, valid through every queue pair of the connection's PD. register_memory_per_queue, on
// a connection whose peer takes a key per queue and whose device has type-2 memory windows,
// registers the region for local access and binding only (its rkey opens nothing) and binds
// one window per queue on that queue's QP: each key then opens exactly that chunk, with only
// the access asked for, through that one queue pair, and dies when the window is deallocated
// (release_memory, or the connection's end, before its queues go). Without windows it falls
// back to the region's key for every queue, and the connection's description says which
// ("memory windows" or "region keys").
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ramshift/base/unique_fd.h"
#include "ramshift/transport/transport.h"
#include "rdma_queue.h"
#include "sealed_queues.h"
#include "verbs_handles.h"

namespace ramshift::transport::rdma {

class RdmaConnection final : public Connection {
 public:
  // Takes queues whose hellos were exchanged; their ids must already be on `channel`.
  // `queue_keys`: the peer takes a key per queue (cm_private_data.h); `no_windows`: why this
  // side binds no memory windows for them ("rxe0 has no type-2 memory windows"), empty when
  // it does.
  RdmaConnection(EventChannel channel, SharedPd pd, std::vector<std::unique_ptr<RdmaQueue>> queues,
                 std::string description, bool queue_keys, std::string no_windows);
  ~RdmaConnection() override;

  const Capabilities& capabilities() const override { return caps_; }
  uint32_t queue_count() const override { return static_cast<uint32_t>(queues_.size()); }
  std::string describe() const override { return description_; }
  std::string transport_name() const override { return "rdma"; }

  // --encrypt: from now on every message is sealed with its queue's keys (sealed_queues.h),
  // and raw pages no longer go one-sided. Before the connection is handed out.
  Status seal_payloads();

  Result<MemoryKey> register_memory(std::span<std::byte> memory, MemoryAccess access) override;
  Result<MemoryKey> register_memory_per_queue(std::span<std::byte> memory,
                                              MemoryAccess access) override;
  Status release_memory(const MemoryKey& key) override;
  Status can_register(uint64_t bytes) const override;
  Status post_send(uint32_t queue, std::span<const ConstBuffer> segments) override;
  Status post_write(uint32_t queue, std::span<const RemoteWrite> writes) override;
  Status read(uint32_t queue, std::span<const RemoteRead> reads, Millis timeout) override;
  Status wait_writable(uint32_t queue, Millis timeout) override;
  Status flush(uint32_t queue, Millis timeout) override;
  Result<size_t> poll(uint32_t queue, std::span<ConstBuffer> out, Millis timeout) override;
  void close() override;

 private:
  Status check(uint32_t queue) const;
  void wait_for_port();
  void watch_cm_events();
  Result<uint32_t> lkey_for(const std::byte* p, size_t len) const;
  Result<MemoryKey> register_chunks(std::span<std::byte> memory, MemoryAccess access, bool windows);

  // One registered chunk of guest memory, and the windows bound to it (one per queue, in
  // queue order; none when the peer gets the region's key). Windows go first.
  struct GuestRegistration {
    MemoryRegion mr;
    std::vector<MemoryWindow> windows;
    uint32_t rkey = 0;  // the key release_memory knows it by: queue 0's window's, or the MR's
  };
  Status bind_windows(std::vector<GuestRegistration>& regs, unsigned access, MemoryKey& key);

  // Destroyed bottom-up: queues (ids, QPs) first (the destructor deallocates the windows
  // before them), then guest MRs, the PD, the event channel.
  EventChannel channel_;
  SharedPd pd_;
  mutable std::mutex mr_mu_;
  std::vector<GuestRegistration> guest_mrs_;  // sorted by address
  std::vector<std::unique_ptr<RdmaQueue>> queues_;

  bool windows_ = false;      // register_memory_per_queue binds memory windows
  std::string no_windows_;    // why not, for the log
  std::once_flag keys_said_;  // the log says once per connection which keys the peer gets
  std::unique_ptr<SealedQueues> sealed_;  // --encrypt; null: messages in clear
  Capabilities caps_;
  std::string description_;
  UniqueFd wake_fd_;
  std::thread cm_thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace ramshift::transport::rdma
