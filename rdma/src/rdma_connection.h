// An rdma:// connection: N RdmaQueues that share a protection domain, the guest memory
// registered for one-sided writes (and, during post-copy, reads), and a thread that watches the
// connection's CM events.
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
  RdmaConnection(EventChannel channel, SharedPd pd, std::vector<std::unique_ptr<RdmaQueue>> queues,
                 std::string description);
  ~RdmaConnection() override;

  const Capabilities& capabilities() const override { return caps_; }
  uint32_t queue_count() const override { return static_cast<uint32_t>(queues_.size()); }
  std::string describe() const override { return description_; }
  std::string transport_name() const override { return "rdma"; }

  // --encrypt: from now on every message is sealed with its queue's keys (sealed_queues.h),
  // and raw pages no longer go one-sided. Before the connection is handed out.
  Status seal_payloads();

  Result<MemoryKey> register_memory(std::span<std::byte> memory, MemoryAccess access) override;
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

  // Destroyed bottom-up: queues (ids, QPs) first, then guest MRs, the PD, the event channel.
  EventChannel channel_;
  SharedPd pd_;
  mutable std::mutex mr_mu_;
  std::vector<MemoryRegion> guest_mrs_;
  std::vector<std::unique_ptr<RdmaQueue>> queues_;

  std::unique_ptr<SealedQueues> sealed_;  // --encrypt; null: messages in clear
  Capabilities caps_;
  std::string description_;
  UniqueFd wake_fd_;
  std::thread cm_thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace ramshift::transport::rdma
