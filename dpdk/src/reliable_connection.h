// A dpdk:// connection without DPDK: N reliable queues (reliable_queue.h) behind the
// transport interface, driven by the port's I/O thread through on_frame() and tick(), and
// sending through a FrameSink (the port's UDP framing in production, a fake in tests).
//
// Threading: the I/O thread is the only caller of on_frame/tick/start_hello and the only one
// that touches the wire; application threads post and poll under each queue's mutex. A dead
// peer (nothing heard for `peer_timeout`) fails every queue with kDisconnected.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "frame_format.h"
#include "ramshift/transport/transport.h"
#include "reliable_queue.h"

namespace ramshift::transport::dpdk {

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // Puts one UDP payload, the concatenation of `pieces` and then `borrowed`, on the wire from
  // `queue`'s port. `pieces` are copied; `borrowed` (a WRITE's bytes, possibly empty) is sent
  // by reference where sends_by_reference(), else copied. A reference is gone when send's
  // caller next lets go of the I/O thread (the frame left or was dropped by then).
  virtual void send(uint16_t queue, std::span<const std::span<const std::byte>> pieces,
                    std::span<const std::byte> borrowed) = 0;
  virtual bool sends_by_reference() const { return false; }
};

struct ConnectionConfig {
  uint32_t conn_id = 0;
  uint32_t queues = 1;
  bool client = false;             // sends HELLO until the server answers
  std::string peer;                // "10.78.0.2:7000", for messages
  SendConfig send;                 // max_payload from the port's MTU
  uint32_t receive_frames = 2048;  // window per queue; see dpdk_settings.h
  size_t max_message = 64u << 20;
  Millis peer_timeout{10000};
  // One-sided writes offered (zero_copy_write). Off only by the measuring knob
  // RAMSHIFT_DPDK_TEST_NO_WRITES (dpdk_backend.cc): raw pages then travel inside the page
  // batches, copied, so the zero-copy path can be measured against the copying one.
  bool one_sided_writes = true;
};

struct ConnectionStats {
  std::atomic<uint64_t> retransmitted_frames{0};
  std::atomic<uint64_t> dropped_frames{0};  // duplicates, outside the window, malformed
  // Bytes of messages and writes (not headers) on the way out: copied with the CPU (a
  // message into its queue at post_send, then into an mbuf at every transmission), or put on
  // the wire by reference to the caller's memory (a write's bytes, at every transmission).
  std::atomic<uint64_t> sent_copied_bytes{0};
  std::atomic<uint64_t> sent_referenced_bytes{0};
};

// Threading of the WriteTargets side: register/release_memory on application threads,
// place() on the I/O thread, under memory_mu_.
class ReliableConnection : public Connection, private WriteTargets {
 public:
  ReliableConnection(ConnectionConfig config, FrameSink& sink);

  // --- the I/O thread ---
  void on_frame(const ParsedFrame& frame, Clock::time_point now);
  // Sends what is due (data, retransmissions, ACKs, HELLOs) and checks the peer is alive.
  void tick(Clock::time_point now);
  bool established() const { return established_.load(); }
  uint32_t conn_id() const { return config_.conn_id; }
  // Ends every queue with `why` (kept: the first failure wins).
  void fail(Status why);
  // Closed locally and every queue's FIN acknowledged (or the peer closed every queue and then
  // went silent: nobody is left to acknowledge), or failed: the stack may forget it.
  bool finished() const;
  Status failure() const;

  // --- Connection ---
  const Capabilities& capabilities() const override { return caps_; }
  uint32_t queue_count() const override { return config_.queues; }
  std::string describe() const override;
  std::string transport_name() const override { return "dpdk"; }
  Result<MemoryKey> register_memory(std::span<std::byte> memory, MemoryAccess access) override;
  Status release_memory(const MemoryKey& key) override;
  // WRITE frames whose bytes are sent from `writes`' local memory by reference (zero copy
  // where the port allows) and copied once on the peer, straight into its memory.
  Status post_write(uint32_t queue, std::span<const RemoteWrite> writes) override;
  Status post_send(uint32_t queue, std::span<const ConstBuffer> segments) override;
  Status wait_writable(uint32_t queue, Millis timeout) override;
  Status flush(uint32_t queue, Millis timeout) override;
  Result<size_t> poll(uint32_t queue, std::span<ConstBuffer> out, Millis timeout) override;
  void close() override;

  // Waits until established (client) or `timeout`.
  Status wait_established(Millis timeout);
  const ConnectionStats& stats() const { return stats_; }
  // Retransmitted and dropped frames, the queues' pacing rates summed, bytes copied and
  // referenced each way.
  LinkStats link_stats() const override;

 private:
  struct Queue {
    Queue(const ConnectionConfig& c, WriteTargets* targets)
        : send(c.send), receive(c.receive_frames, c.max_message, targets) {}
    std::mutex mu;
    std::condition_variable cv;
    SendQueue send;
    ReceiveQueue receive;
    std::vector<Bytes> lent;  // what the last poll returned views of
    bool ack_due = false;
    uint32_t advertised_window = 0;
    Clock::time_point last_ack{};
  };
  bool place(const WriteTarget& target, std::span<const std::byte> bytes) override;
  void send_ack(uint16_t q, Queue& queue, Clock::time_point now);
  void send_control(FrameType type, uint16_t queue_field);
  Status check_queue(uint32_t queue) const;
  Status gone() const;
  Status peer_closed() const;
  Status send_room(const Queue& q) const;

  ConnectionConfig config_;
  FrameSink& sink_;
  Capabilities caps_;
  std::vector<std::unique_ptr<Queue>> queues_;
  ConnectionStats stats_;
  std::atomic<bool> established_{false};
  std::atomic<bool> closed_{false};
  std::atomic<bool> failed_{false};
  mutable std::mutex state_mu_;
  std::condition_variable state_cv_;
  Status failure_;
  Clock::time_point last_heard_;
  std::atomic<Clock::rep> last_heard_ticks_;  // last_heard_ for application threads
  Clock::time_point last_hello_{};
  // Memory registered for the peer's writes: address -> (length, key).
  struct Writable {
    uint64_t length;
    uint32_t rkey;
  };
  std::mutex memory_mu_;
  std::map<uint64_t, Writable> writable_;
  uint32_t next_rkey_;
  bool refused_ = false;  // we refused a write: every later DATA frame hears so again
};

}  // namespace ramshift::transport::dpdk
