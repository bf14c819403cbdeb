// The transport interface every backend implements. loopback and tcp live beside it in the
// core; the others (rdma/, dpdk/) plug in through the registry (registry.h).
//
// A Connection has N queues. Each queue is an independent, reliable, ordered channel of
// messages in both directions; queues are not ordered relative to each other. Calls are
// batched where it matters: post_send takes a gather list (one message from many pieces)
// and poll returns many messages at once, so one virtual call moves many pages.
//
// Threading: per queue, at most one thread sends and at most one thread receives at a time
// (they may be different threads). Different queues may be driven by different threads with
// no locking between them. close() may be called from any thread at any time and wakes every
// waiter on every queue.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/transport/settings.h"
#include "ramshift/transport/uri.h"

namespace ramshift::transport {

using ConstBuffer = std::span<const std::byte>;
using Millis = std::chrono::milliseconds;

struct Capabilities {
  bool reliable = true;          // complete messages, each once, in order per queue
  bool zero_copy_write = false;  // can place bytes in registered remote memory (rdma)
  bool remote_read = false;      // can read registered remote memory (rdma, post-copy)
  size_t max_message = 0;        // largest message post_send accepts, in bytes
  uint32_t max_queues = 0;
  // Keys for one-sided access travel one per queue (MemoryKey::queue_rkeys in MEMORY_KEYS):
  // both ends agreed on it when the connection formed (rdma: both builds take them).
  bool keys_per_queue = false;
};

// Who may touch registered memory. kLocal: only this side's own writes read from it (the
// source's guest memory). kRemoteWrite: the peer may write into it (the destination's guest
// memory, for the migration's lifetime only). kRemoteRead: the peer may read it (the paused
// source's guest memory while post-copy runs, released after). kReadTarget: this side's own
// reads of the peer's memory land in it (the destination's staging pages).
enum class MemoryAccess { kLocal, kRemoteWrite, kRemoteRead, kReadTarget };

// Handle for memory registered with a backend. Large ranges are registered as several chunks
// of `chunk_bytes` (in parallel), each with its own rkey; a remote write must not cross a
// chunk boundary. Backends without registration return a key that only echoes the range.
struct MemoryKey {
  uint64_t address = 0;
  uint64_t length = 0;
  uint64_t chunk_bytes = 0;     // 0: one chunk covering the whole range
  std::vector<uint32_t> rkeys;  // one per chunk; empty where the backend has none
  // From register_memory_per_queue: `queues` keys per chunk, chunk by chunk (chunk c's key
  // for queue q at [c * queues + q]), each of which may open the chunk through its queue
  // only (then `rkeys` holds queue 0's). Empty from register_memory: `rkeys` serve every queue.
  uint32_t queues = 0;
  std::vector<uint32_t> queue_rkeys;
  // rkey for the byte at `addr` (which must lie in [address, address + length)).
  uint32_t rkey_at(uint64_t addr) const {
    if (rkeys.empty()) return 0;
    return chunk_bytes == 0 ? rkeys[0] : rkeys[(addr - address) / chunk_bytes];
  }
  // The same, for an access through `queue`.
  uint32_t rkey_at(uint64_t addr, uint32_t queue) const {
    if (queue_rkeys.empty() || queue >= queues) return rkey_at(addr);
    const uint64_t chunk = chunk_bytes == 0 ? 0 : (addr - address) / chunk_bytes;
    return queue_rkeys[chunk * queues + queue];
  }
};

// One zero-copy write: `length` bytes at `local` (inside memory registered on this
// connection) into the peer's registered memory at `remote_address` under `rkey`.
struct RemoteWrite {
  const std::byte* local = nullptr;
  size_t length = 0;
  uint64_t remote_address = 0;
  uint32_t rkey = 0;
};

// One one-sided read: `length` bytes of the peer's registered memory at `remote_address`
// under `rkey` (registered kRemoteRead there) into `local` (inside memory registered
// kReadTarget on this connection).
struct RemoteRead {
  std::byte* local = nullptr;
  size_t length = 0;
  uint64_t remote_address = 0;
  uint32_t rkey = 0;
};

// What a backend counts about its own link, for reports (`--json`) and `bench`. A field
// stays empty where the backend does not count it (tcp leaves loss recovery to the kernel).
struct LinkStats {
  std::optional<uint64_t> retransmitted_frames;  // frames this side sent again (lost or late)
  // Frames this side received and threw away (duplicates, outside the window, malformed,
  // no buffer) or could not put on the wire.
  std::optional<uint64_t> dropped_frames;
  std::optional<double> pacing_rate;  // bytes/s the sender's congestion control allows now
  // Bytes of messages and one-sided writes (not headers) this side's backend copied with the
  // CPU on the way out, each copy and each retransmission counted, and those it put on the
  // wire by reference to the caller's memory (zero copy). dpdk: a message is copied into the
  // queue at post_send and into an mbuf at each transmission; a write's bytes are referenced.
  std::optional<uint64_t> sent_copied_bytes;
  std::optional<uint64_t> sent_referenced_bytes;
  // Bytes of messages and writes received (each once), and the bytes copied to put them
  // where they go (each copy counted): their ratio is the copies each byte took on the way
  // in (dpdk: 1 when frames arrive in order, a write straight into registered memory).
  std::optional<uint64_t> received_bytes;
  std::optional<uint64_t> received_copied_bytes;
};

class Connection {
 public:
  virtual ~Connection() = default;

  virtual const Capabilities& capabilities() const = 0;
  virtual uint32_t queue_count() const = 0;
  // Human-readable description for logs and reports, e.g. "tcp 127.0.0.1:7000 (4 queues)".
  virtual std::string describe() const = 0;
  virtual std::string transport_name() const = 0;  // "tcp", "loopback", ...

  // Registers memory for zero-copy use for the connection's lifetime (deregistered when the
  // connection is destroyed). No-op where the backend needs none.
  virtual Result<MemoryKey> register_memory(std::span<std::byte> memory, MemoryAccess access) = 0;
  // Deregisters what register_memory returned as `key` before the connection ends: the peer
  // can no longer read or write it (an access with its keys fails on the peer's side). ok
  // once gone; kNotFound when this connection holds no memory under those keys. No-op where
  // the backend needs no registration.
  virtual Status release_memory(const MemoryKey& /*key*/) { return Status::ok(); }
  // Like register_memory, for memory the peer reaches one-sidedly (kRemoteWrite, kRemoteRead)
  // when the caller hands the peer a key per queue (MemoryKey::queue_rkeys; only where
  // capabilities().keys_per_queue). A backend that can bind a key to one queue does (rdma,
  // with type-2 memory windows): each key then works through its own queue only, and dies
  // with release_memory or the connection. This default gives every queue the chunk's key.
  virtual Result<MemoryKey> register_memory_per_queue(std::span<std::byte> memory,
                                                      MemoryAccess access) {
    RS_ASSIGN_OR_RETURN(MemoryKey key, register_memory(memory, access));
    key.queues = queue_count();
    for (uint32_t k : key.rkeys) key.queue_rkeys.insert(key.queue_rkeys.end(), key.queues, k);
    return key;
  }
  // Whether `bytes` more can be registered (rdma: the memlock limit), checked before memory
  // is registered piece by piece, so a guest too large fails at once and says how to fix it.
  virtual Status can_register(uint64_t /*bytes*/) const { return Status::ok(); }
  // The backend's own link counters so far (valid after close() too).
  virtual LinkStats link_stats() const { return {}; }

  // Posts one-sided writes on `queue` (capabilities().zero_copy_write only; elsewhere
  // kInvalidArgument). They are ordered before every later post_send on the same queue: once
  // the peer receives a later message of that queue, the bytes have landed in its memory
  // (rdma: and no CPU of the peer touched them; dpdk: the peer's CPU copied them there
  // once). The local bytes are read after the call returns, until flush() or until the peer
  // has received a later message; they must stay mapped until flush() (a backend that
  // retransmits may read them again until it hears the acknowledgement, and the peer drops
  // what such a late copy carries).
  //   ok           all accepted      kWouldBlock  not enough room now: wait_writable, retry
  //   kInvalidArgument  more writes than the queue can ever hold, or local memory unregistered
  virtual Status post_write(uint32_t queue, std::span<const RemoteWrite> writes) = 0;

  // Reads the peer's memory one-sided on `queue` (capabilities().remote_read only; elsewhere
  // kInvalidArgument) and returns once every read has landed in local memory (no CPU of the
  // peer took part), or fails: kTimeout after `timeout`, kDisconnected / kIo / kProtocol (a
  // key the peer does not hold: the queue fails on both sides, as a bad write does). May run
  // on any thread, beside the queue's sender and receiver (reads of a queue are serialised
  // inside the backend); what it waits for is only the reads, not messages in front of them.
  //   kInvalidArgument  more reads than the queue can ever hold, or local memory unregistered
  virtual Status read(uint32_t queue, std::span<const RemoteRead> reads, Millis timeout);

  // Sends one message, the concatenation of `segments`, on `queue`.
  //   ok           accepted; the caller may reuse the segment buffers at once
  //   kWouldBlock  not accepted: the queue is full; call wait_writable() and retry
  //   kDisconnected / kIo   the connection is gone
  // A message larger than capabilities().max_message is kInvalidArgument.
  // An accepted message may wait inside the backend (tcp: the unsent tail of a partial
  // write) until the next post_send, wait_writable or flush on the same queue: a sender
  // that stops sending must call flush() to be sure everything leaves.
  virtual Status post_send(uint32_t queue, std::span<const ConstBuffer> segments) = 0;

  // Waits until post_send on `queue` would accept a message, or `timeout` (kTimeout).
  virtual Status wait_writable(uint32_t queue, Millis timeout) = 0;

  // Waits until every message accepted on `queue` has left this process (kernel or NIC).
  virtual Status flush(uint32_t queue, Millis timeout) = 0;

  // Receives up to out.size() messages from `queue`, waiting up to `timeout` for the first.
  // Returns how many were stored in `out` (0 on timeout). The views stay valid until the
  // next poll() on the same queue. Once the peer has gone and every complete message was
  // delivered: kDisconnected. A message cut short by the peer is never delivered.
  virtual Result<size_t> poll(uint32_t queue, std::span<ConstBuffer> out, Millis timeout) = 0;

  // Closes every queue: the peer sees kDisconnected after what was already sent; local
  // waiters wake with kDisconnected. Idempotent, thread-safe.
  virtual void close() = 0;
};

class Listener {
 public:
  virtual ~Listener() = default;
  // The address actually bound (with the port the kernel chose for port 0).
  virtual Uri address() const = 0;
  // Waits up to `timeout` for one whole connection (all of its queues). kTimeout if none.
  virtual Result<std::unique_ptr<Connection>> accept(Millis timeout) = 0;
};

// What the side opening a connection mostly receives, so a backend can size what it pins
// for receiving: a migration destination takes page batches, a source only replies (round
// acknowledgements, memory keys, the commit; tens of bytes to a few KiB).
enum class ReceiveLoad { kBulk, kReplies };

struct TransportOptions {
  // How long connect() may take for all queues before kUnreachable/kTimeout.
  Millis connect_timeout{10000};
  ReceiveLoad receive_load = ReceiveLoad::kBulk;
  // A peer that stops answering without closing (host down, link cut) fails the connection
  // after this long (kDisconnected) in every state, idle or sending; 0 = the OS defaults
  // (minutes). tcp: keepalive + TCP_USER_TIMEOUT (tcp_socket.h). --peer-timeout sets it.
  Millis peer_timeout{0};
  // Backend-specific settings (e.g. "rdma-sq-depth"), read by the backend they belong to and
  // ignored by the others.
  BackendSettings settings;
};

// The kInvalidArgument every backend without one-sided writes returns from post_write.
Status no_remote_writes(const std::string& transport_name);
// ... and without one-sided reads from read() (the default Connection::read).
Status no_remote_reads(const std::string& transport_name);

// Opens a listener for `uri` with the backend registered for its scheme (registry.h).
// kAddressInUse when the port is taken; kInvalidArgument for a scheme this build does not
// carry, with the reason.
Result<std::unique_ptr<Listener>> listen(const Uri& uri, const TransportOptions& options = {});

// Connects `queues` queues to a listener at `uri`.
Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues,
                                            const TransportOptions& options = {});

}  // namespace ramshift::transport
