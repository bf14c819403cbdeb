// One dpdk:// queue's reliability, without DPDK: the sending half (fragments, sequence
// numbers, the peer's window, retransmission on timeout and on SACK holes, an RTT estimate)
// and the receiving half (duplicates and reordering absorbed, in-order reassembly, the
// cumulative ACK with SACK ranges, the window it offers). The connection drives both under its
// queue's lock; times are passed in so tests control the clock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <utility>
#include <vector>

#include "congestion.h"
#include "frame_format.h"
#include "ramshift/transport/transport.h"

namespace ramshift::transport::dpdk {

using Bytes = std::vector<std::byte>;

struct OutFrame {
  uint32_t seq = 0;
  uint16_t flags = 0;
  uint32_t msg_len = 0;
  // A message's fragment, copied in by push_message. Empty in a WRITE frame (kFlagWrite),
  // whose bytes are `borrowed`: the caller's memory, never copied here (push_write), which
  // goes to `target` on the peer. Borrowed bytes are read again by every retransmission, so
  // they must stay mapped until the frame is acknowledged (see push_write).
  Bytes payload;
  std::span<const std::byte> borrowed;
  WriteTarget target;
  // What the frame carries after its header: the WRITE's target, then its bytes.
  size_t wire_payload() const {
    return payload.size() + borrowed.size() + (borrowed.empty() ? 0 : kWriteTargetBytes);
  }
  Clock::time_point sent_at{};
  uint32_t sends = 0;  // 0: never sent
  bool sacked = false;
};

struct SendConfig {
  size_t max_payload = 1400;  // bytes of message per frame (the MTU less the headers)
  // Messages stay buffered (and post_send says kWouldBlock) beyond this; one message of any
  // size is accepted when below it. Why 8 MiB: a few of the engine's batches per queue.
  size_t buffer_bytes = 8u << 20;
  // What the sender assumes of the receiver's window before its first ACK.
  uint32_t initial_window = 64;
  // Why these: a veth round trip is tens of microseconds, but two processes sharing two
  // cores see milliseconds of scheduling; 1 s caps the backoff so a healed path resumes soon.
  Clock::duration min_rto = std::chrono::milliseconds(5);
  Clock::duration max_rto = std::chrono::seconds(1);
  // Data frames (new and resent) leave at the rate the controller sets; off, only the
  // window limits the sender (unit tests of the window alone).
  bool pacing = true;
  CongestionConfig congestion;
  // Bytes a frame costs on the wire beyond its payload (our header, UDP, IPv4, Ethernet),
  // which the pacer counts.
  size_t frame_overhead = kHeaderBytes + 42;
};

class SendQueue {
 public:
  explicit SendQueue(SendConfig config);

  // Whether post_send may buffer another message now. Once full, not again until half of
  // the buffer drained (as the kernel wakes a TCP writer): a peer that stopped reading keeps
  // the sender blocked instead of letting it trickle in its window's worth.
  bool writable() const { return !full_; }
  // Cuts the concatenation of `segments` into frames (one, empty, for an empty message).
  void push_message(std::span<const std::span<const std::byte>> segments);
  // Cuts one-sided writes into WRITE frames (max_payload less the target each) that borrow
  // the writes' local bytes: nothing is copied. Why borrowing is safe: Connection::post_write
  // keeps the local bytes the caller's until flush() (which waits for the acknowledgement
  // here) or until the peer has received a later message of the queue; after that only a
  // retransmission that crossed the acknowledgement reads them, and the peer drops it as a
  // duplicate, so changed bytes never land. The memory must stay mapped until flush().
  void push_write(std::span<const RemoteWrite> writes);
  // The queue's last frame: the peer reports kDisconnected once everything before it arrived.
  void push_fin();

  // The frames to put on the wire now, at most `max`, marked sent at `now`: holes the peer's
  // SACKs reveal (once each), frames whose timer ran out, then new frames inside the window.
  std::vector<const OutFrame*> due(Clock::time_point now, size_t max);
  // Applies the peer's ACK; false when it acknowledges frames never sent (ignored).
  bool on_ack(const AckBody& ack, Clock::time_point now);

  bool idle() const { return frames_.empty(); }  // everything sent was acknowledged
  bool fin_acked() const { return fin_pushed_ && frames_.empty(); }
  uint64_t retransmitted() const { return retransmitted_; }
  Clock::duration rto() const { return rto_; }
  const RateController& pacer() const { return pacer_; }

 private:
  void push_frame(OutFrame frame);
  OutFrame& at(uint32_t seq) { return frames_[seq - base_]; }

  SendConfig config_;
  std::deque<OutFrame> frames_;  // unacknowledged, from base_ on
  uint32_t base_ = 0;            // lowest unacknowledged sequence number
  uint32_t next_seq_ = 0;        // the next frame pushed gets this
  uint32_t next_unsent_ = 0;     // the first frame never sent
  uint32_t peer_window_;         // frames from base_ the peer takes
  uint32_t highest_sacked_ = 0;  // one past the highest frame a SACK covered
  size_t buffered_bytes_ = 0;
  bool full_ = false;
  bool fin_pushed_ = false;
  Clock::duration rto_;
  // The scan for holes and expired timers walks every unacknowledged frame: done when a SACK
  // changed something or once a millisecond, not on every tick.
  bool rescan_ = false;
  Clock::time_point next_scan_{};
  Clock::duration srtt_{};
  Clock::duration rttvar_{};
  bool have_rtt_ = false;
  uint64_t retransmitted_ = 0;
  RateController pacer_;
};

// Memory this side registered for the peer's one-sided writes (kRemoteWrite).
class WriteTargets {
 public:
  virtual ~WriteTargets() = default;
  // Copies `bytes` to `target` and returns true when they lie inside memory registered under
  // target.rkey; false (nothing copied) otherwise. The copy and the check are one step, so
  // memory released meanwhile (release_memory, then perhaps unmapped) is never written.
  // Called by the I/O thread.
  virtual bool place(const WriteTarget& target, std::span<const std::byte> bytes) = 0;
};

class ReceiveQueue {
 public:
  // `capacity_frames`: frames this side holds at most (out of order, assembling, delivered
  // but not yet released); `max_message`: the largest message accepted; `targets`: where
  // WRITE frames may land (null: nowhere, every WRITE is refused).
  ReceiveQueue(uint32_t capacity_frames, size_t max_message, WriteTargets* targets = nullptr);

  // A frame that arrives in order is consumed from `payload` at once (a message fragment
  // appended to its message, a WRITE copied into place): one copy. One that arrives early
  // is staged (a copy) until the frames before it arrive, then consumed (a second copy).
  // kRefusedWrite: a WRITE, in order, outside `targets`; the queue cannot go on.
  enum class Outcome { kAccepted, kDuplicate, kOutsideWindow, kBrokenMessage, kRefusedWrite };
  Outcome on_data(const FrameHeader& header, std::span<const std::byte> payload);

  AckBody ack() const;
  uint32_t window() const;
  // Complete messages in order, at most `max`; their frames stay counted against the window
  // until release_taken() (the caller holds them until its next poll).
  std::vector<Bytes> take(size_t max);
  void release_taken() { held_frames_ -= taken_frames_, taken_frames_ = 0; }
  bool has_messages() const { return !complete_.empty(); }
  // The FIN arrived and every message before it was taken.
  bool finished() const { return fin_ && complete_.empty(); }
  bool fin_received() const { return fin_; }
  // Bytes of messages and writes accepted (each frame once, WRITE targets not counted), and
  // the bytes copied to get them where they go (each copy counted).
  uint64_t received_bytes() const { return received_bytes_; }
  uint64_t copied_bytes() const { return copied_bytes_; }
  // After kRefusedWrite: the WRITE's target and length, for the message.
  std::pair<WriteTarget, size_t> refused_write() const { return refused_; }

 private:
  struct Held {
    uint16_t flags;
    uint32_t msg_len;
    Bytes payload;
  };
  struct Message {
    Bytes bytes;
    uint32_t frames;
  };
  Outcome consume_in_order(uint16_t flags, uint32_t msg_len, std::span<const std::byte> payload);

  uint32_t capacity_;
  size_t max_message_;
  WriteTargets* targets_;
  uint64_t received_bytes_ = 0;
  uint64_t copied_bytes_ = 0;
  std::pair<WriteTarget, size_t> refused_{};
  uint32_t cumulative_ = 0;           // next sequence number expected in order
  std::map<uint32_t, Held> pending_;  // arrived above cumulative_
  std::deque<Message> complete_;
  Bytes assembling_;
  uint32_t assembling_len_ = 0;
  uint32_t assembling_frames_ = 0;
  bool in_message_ = false;
  uint32_t held_frames_ = 0;  // in order but not released: assembling, complete, taken
  uint32_t taken_frames_ = 0;
  bool fin_ = false;
};

}  // namespace ramshift::transport::dpdk
