// rdma:// --encrypt: every message a queue carries is sealed with AES-256-GCM
// (transport::PayloadSealer, keyed from that queue's TLS session: one key per direction and
// queue) and opened, its tag checked, into private memory before the caller sees a byte.
//
// What this gives up: a sealed batch cannot be placed one-sided. Raw pages stop going by RDMA
// WRITE straight into the destination's guest memory (the connection stops offering
// zero_copy_write, so the source sends them in messages like any other batch), and the
// destination no longer registers its guest memory for remote writes at all. The receive
// ring stays remotely writable (that is how messages arrive), which is why opening reads
// each sealed byte once and writes the plaintext elsewhere.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ramshift/transport/channel_security.h"
#include "ramshift/transport/transport.h"

namespace ramshift::transport::rdma {

class SealedQueues {
 public:
  // The sealers of `sessions.size()` queues (sessions[i] is queue i's).
  static Result<std::unique_ptr<SealedQueues>> create(
      std::span<const SecureSession* const> sessions);

  // Sender thread of `queue`: `segments` sealed into one message, in memory that stays valid
  // until the next seal() of that queue.
  Result<ConstBuffer> seal(uint32_t queue, std::span<const ConstBuffer> segments);
  // The queue refused what seal() returned (kWouldBlock, nothing posted).
  void withdraw(uint32_t queue) { queues_[queue].send->withdraw_last(); }
  // Receiver thread of `queue`: opens each of `views` (sealed messages as they arrived) and
  // points it at its plaintext, valid until the next open() of that queue.
  Status open(uint32_t queue, std::span<ConstBuffer> views);

 private:
  struct Queue {
    std::unique_ptr<PayloadSealer> send;
    std::unique_ptr<PayloadSealer> receive;
    std::vector<std::byte> sealed;               // sender thread
    std::vector<std::vector<std::byte>> opened;  // receiver thread, one per view
  };
  std::vector<Queue> queues_;
};

}  // namespace ramshift::transport::rdma
