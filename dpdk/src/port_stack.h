// The DPDK side of dpdk://: one EAL per process and, per ethdev port, a tiny Ethernet/ARP/
// IPv4/UDP stack run by one I/O thread that polls the port, answers ARP, validates every
// frame, hands ours to their connection (by connection id) and transmits what the
// connections' ticks produce. Only this file pair and dpdk_backend.cc see rte_* names.
//
// EAL can be initialised once per process: the first open fixes its arguments, a later one
// with different arguments is refused, and a failed initialisation stays failed (EAL
// cannot be retried). Ports open once and close, with the EAL, when the process exits.
#pragma once

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "dpdk_settings.h"
#include "ramshift/transport/raw_bench.h"
#include "reliable_connection.h"

struct rte_mempool;

namespace ramshift::transport::dpdk {

using Mac = std::array<uint8_t, 6>;

// Where one connection's frames go: addresses and UDP ports of both ends. A client uses
// one UDP port per queue (base + queue) so RSS or flow rules can spread queues; the server
// answers each from its listening port.
struct Path {
  uint32_t local_ip = 0, peer_ip = 0;
  uint16_t local_port = 0, peer_port = 0;
  bool local_per_queue = false, peer_per_queue = false;
  Mac peer_mac{};
};

// A received Ethernet frame read as IPv4/UDP (port_stack_rx.cc): kUdp when it is a valid
// datagram to one of `local_ips` (the IPv4 header checksum always checked, the UDP one when
// asked and present); kArp for the stack's ARP; kOther when it is not for us (not IPv4, not
// UDP, another address); kMalformed otherwise. `payload` points into the frame.
struct ReadFrame {
  enum class Kind { kUdp, kArp, kOther, kMalformed };
  Kind kind = Kind::kOther;
  uint32_t src_ip = 0, dst_ip = 0;
  uint16_t src_port = 0, dst_port = 0;
  Mac src_mac{};
  std::span<const std::byte> payload;
};
ReadFrame read_frame(std::span<const std::byte> frame, std::span<const uint32_t> local_ips,
                     bool check_udp_sum);

// `bench --raw` (port_stack_raw.cc): what the sender blasts, and where the receiver counts.
struct RawSendPlan {
  Path path;                   // one UDP port each side (no per-queue ports)
  uint32_t run_id = 0;         // in every frame, so a receiver tells this run's frames apart
  uint32_t payload_bytes = 0;  // after our 20-byte header; <= mtu() - 48
  Millis duration{3000};
};
struct RawReceivePlan {
  uint32_t ip = 0;
  uint16_t port = 0;
  Millis duration{3000}, grace{2000};  // RawBenchConfig's
};

class PortStack;

// A registered connection: the reliable connection and the path its frames take.
struct Registered : FrameSink {
  Registered(PortStack& s, Path p, ConnectionConfig c) : stack(s), path(p), conn(c, *this) {}
  void send(uint16_t queue, std::span<const std::span<const std::byte>> pieces,
            std::span<const std::byte> borrowed) override;
  bool sends_by_reference() const override;
  PortStack& stack;
  Path path;
  ReliableConnection conn;
};

struct PendingAccepts {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Registered>> ready;
};

class PortStack {
 public:
  // The stack of `settings.port`, initialising the EAL and the port on first use.
  static Result<PortStack*> open(const DpdkSettings& settings);
  ~PortStack();
  PortStack(const PortStack&) = delete;
  PortStack& operator=(const PortStack&) = delete;

  uint16_t mtu() const { return mtu_; }
  // The largest payload a raw bench frame may carry: the MTU, or an mbuf's data room if
  // smaller, less the IPv4, UDP and our headers (1,452 at a 1,500 MTU).
  uint32_t raw_payload_limit() const;
  // Answers ARP for `ip` from now on.
  void add_local_ip(uint32_t ip);
  // HELLOs to ip:port create connections queued on `accepts`; kAddressInUse if taken.
  Status bind(uint32_t ip, uint16_t port, std::shared_ptr<PendingAccepts> accepts,
              ConnectionConfig server_config);
  void unbind(uint32_t ip, uint16_t port);
  // The peer's MAC by ARP (or the cache), within `timeout`.
  Result<Mac> resolve(uint32_t local_ip, uint32_t peer_ip, Millis timeout);
  // Registers a connection; the stack ticks it until forget().
  std::shared_ptr<Registered> add(Path path, ConnectionConfig config);
  void forget(uint32_t conn_id);
  uint64_t dropped_frames() const { return dropped_.load(); }

  // The I/O thread's transmit path (Registered::send): `pieces` copied into the frame's mbuf,
  // `borrowed` chained behind it as an external-buffer mbuf when sends_by_reference().
  void transmit(const Path& path, uint16_t queue,
                std::span<const std::span<const std::byte>> pieces,
                std::span<const std::byte> borrowed);
  // Whether this port's PMD may be handed process memory it does not own: one that copies
  // each frame out of its mbufs inside rte_eth_tx_burst and frees them there (af_packet into
  // its kernel ring, memif into the shared rings), so no reference outlives the I/O thread's
  // burst and nothing needs DMA-mapping. A NIC would DMA from guest memory later, and only
  // once it was registered with DPDK and mapped for the device (rte_extmem_register,
  // rte_dev_dma_map), which is left: there borrowed bytes are copied.
  bool sends_by_reference() const { return by_reference_; }

  // `bench --raw`: the calling thread drives the port alone for the run while the I/O
  // thread stays parked (ARP is still answered, by the receiver's loop). For a port no
  // connection uses: theirs would stall meanwhile. `stop` (may be null) ends the run early.
  RawBenchReport raw_send(const RawSendPlan& plan, const std::atomic<bool>* stop);
  RawBenchReport raw_receive(const RawReceivePlan& plan, const std::atomic<bool>* stop);

 private:
  struct Port;  // the rte_* resources
  PortStack(std::unique_ptr<Port> port, uint16_t mtu, Mac mac);
  void run();
  size_t receive_burst(Clock::time_point now);
  void handle_frame(const std::byte* data, size_t len, Clock::time_point now);
  void handle_arp(const std::byte* data, size_t len);
  void deliver(uint32_t src_ip, uint16_t src_port, uint32_t dst_ip, uint16_t dst_port,
               std::span<const std::byte> udp_payload, Clock::time_point now);
  void dispatch(uint32_t src_ip, uint16_t src_port, uint32_t dst_ip, uint16_t dst_port,
                std::span<const std::byte> udp_payload, Clock::time_point now);
  void send_arp(bool reply, uint32_t sender_ip, uint32_t target_ip, const Mac& target_mac);
  void flush_tx();
  // Ethernet, IPv4 (its checksum set) and UDP headers (checksum 0: none yet) for `payload`
  // bytes on `path`, written at `out`; returns where the payload goes.
  std::byte* write_headers(std::byte* out, const Path& path, uint16_t queue, size_t payload) const;
  // Parks the I/O thread and holds mu_ while a raw bench runs (port_stack_raw.cc).
  class Exclusive;

  std::unique_ptr<Port> port_;
  uint16_t port_id_;
  rte_mempool* pool_;
  rte_mempool* ext_pool_;  // mbufs without data room, to attach borrowed bytes to
  bool by_reference_ = false;
  uint16_t mtu_;
  Mac mac_;
  FaultPlan faults_;
  uint64_t fault_rng_;
  struct Held {
    uint32_t src_ip, dst_ip;
    uint16_t src_port, dst_port;
    Bytes payload;
  };
  std::optional<Held> held_;  // the fault injector's frame held back to reorder

  std::mutex mu_;  // everything below; the I/O thread holds it while it works
  std::map<uint32_t, std::shared_ptr<Registered>> conns_;
  struct Binding {
    std::shared_ptr<PendingAccepts> accepts;
    ConnectionConfig config;
  };
  std::map<std::pair<uint32_t, uint16_t>, Binding> bindings_;
  std::vector<uint32_t> local_ips_;
  std::map<uint32_t, Mac> arp_;
  std::map<uint32_t, uint32_t> arp_wanted_;  // peer ip -> the local ip asking
  std::condition_variable arp_cv_;

  std::vector<void*> tx_;  // rte_mbuf*, built by ticks, sent by flush_tx
  std::atomic<uint64_t> dropped_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> exclusive_{false};  // a raw bench drives the port; the I/O thread waits
  std::thread thread_;
};

}  // namespace ramshift::transport::dpdk
